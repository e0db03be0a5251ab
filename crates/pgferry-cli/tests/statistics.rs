//! The copy's planner statistics against real clusters: a PostgreSQL 18 target
//! gets the source's statistics where they can be carried (equal to the
//! source's, the relation's pages its own) and analyzes the tables whose
//! statistics cannot be (never analyzed, extended statistics, range columns
//! from a 15 source, partitioned parents); a 15 target analyzes every table.
//! Autovacuum is off on both sides, so every statistic read is the copy's.

use std::process::{Command, Output};

use pgferry_testkit::{q, Cluster, PgVersion, HOSTILE_NAMES};

/// The schema of the tables named with every hostile name.
const HOSTILE_SCHEMA: &str = "semi;colon--x";

/// Copies with both clients installed (18's first), as on an operator's machine:
/// pgferry picks the one both servers accept.
fn copy(source: &Cluster, target: &Cluster) -> Output {
    let path = format!("{}:{}", PgVersion::V18.bin_dir().display(), std::env::var("PATH").unwrap_or_default());
    Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["copy", "--source", &source.url("app"), "--target", &target.url("app"), "--jobs", "2"])
        .env("PATH", path)
        .output()
        .expect("run pgferry")
}

fn stdout_of_success(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pgferry failed ({:?}):\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn quiet(version: PgVersion) -> Cluster {
    Cluster::builder(version).setting("autovacuum", "off").start()
}

/// `carried`: analyzed after half its rows were deleted (its pages are twice
/// what the copy needs), with a dropped column, columns of many types (whose
/// statistics' text the target must read back) and an expression index;
/// `part_a`: an analyzed partition (its index is built with its parent's,
/// after its statistics are written, which it must leave as they are); `family`: an inheritance parent (statistics
/// of its own rows and of the whole tree); `never`: never analyzed; `extended`: with
/// a `CREATE STATISTICS` object; `spans`: a range column.
fn load(c: &Cluster) {
    c.create_database("app");
    c.psql(
        "app",
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
         CREATE DOMAIN small_ints AS int[] CHECK (cardinality(VALUE) < 5);
         CREATE TABLE carried (id int PRIMARY KEY, gone int, cat text, tags int[], v numeric, doc jsonb,
                               words tsvector, at timestamptz, feeling mood, raw bytea, uid uuid, few small_ints,
                               labels text[], \"Odd Name\" text);
         ALTER TABLE carried DROP COLUMN gone;
         CREATE INDEX carried_lower ON carried (lower(cat));
         INSERT INTO carried
         SELECT g, 'cat ' || (g % 17), ARRAY[g % 5, g % 7], g / 3.0, jsonb_build_object('k', g % 13),
                to_tsvector('simple', 'word' || (g % 11) || ' other' || (g % 3)), '2024-01-01'::timestamptz + g * interval '1 hour',
                (ARRAY['sad', 'ok', 'happy'])[1 + g % 3]::mood, decode(md5((g % 20)::text), 'hex'), md5((g % 30)::text)::uuid,
                ARRAY[g % 4], ARRAY['a,b' || (g % 6), 'q\"' || (g % 2)], CASE WHEN g % 5 = 0 THEN NULL ELSE 'x' || (g % 8) END
         FROM generate_series(1, 20000) g;
         DELETE FROM carried WHERE id % 2 = 0;
         CREATE TABLE measures (at int, v int) PARTITION BY RANGE (at);
         CREATE TABLE part_a PARTITION OF measures FOR VALUES FROM (0) TO (100000);
         CREATE INDEX measures_v ON measures (v);
         INSERT INTO measures SELECT g, g % 100 FROM generate_series(1, 3000) g;
         CREATE TABLE never (id int, v text);
         INSERT INTO never SELECT g, 'v' || (g % 9) FROM generate_series(1, 2000) g;
         CREATE TABLE extended (a int, b int);
         CREATE STATISTICS extended_ab (dependencies, ndistinct) ON a, b FROM extended;
         INSERT INTO extended SELECT g % 10, g % 20 FROM generate_series(1, 2000) g;
         CREATE TABLE family (id int PRIMARY KEY, v text);
         CREATE TABLE family_kid (PRIMARY KEY (id)) INHERITS (family);
         INSERT INTO family SELECT g, 'p' || (g % 4) FROM generate_series(1, 1000) g;
         INSERT INTO family_kid SELECT g, 'k' || (g % 6) FROM generate_series(1001, 3000) g;
         CREATE TABLE spans (id int, r int4range);
         INSERT INTO spans SELECT g, int4range(g, g + g % 50) FROM generate_series(1, 2000) g;",
    );
    c.psql("app", "VACUUM carried");
    c.psql("app", "ANALYZE carried, measures, extended, spans, family, family_kid");
    c.psql("app", &format!("CREATE SCHEMA {}", q(HOSTILE_SCHEMA)));
    for name in HOSTILE_NAMES {
        let (table, column) = (format!("{}.{}", q(HOSTILE_SCHEMA), q(name)), q(name));
        c.psql(
            "app",
            &format!(
                "CREATE TABLE {table} ({column} text);
                 CREATE INDEX ON {table} (lower({column}));
                 INSERT INTO {table} SELECT 'v' || (g % 7) FROM generate_series(1, 300) g;
                 ANALYZE {table};"
            ),
        );
    }
    // part_a's row estimate goes stale: its carried 3000 differs from the 3500
    // an index build would count.
    c.psql("app", "INSERT INTO measures SELECT g, g % 100 FROM generate_series(3001, 3500) g");
}

/// A relation's statistics as `pg_stats` shows them in every version, with its
/// rows and the `inherited` flag.
fn pg_stats(c: &Cluster, relation: &str) -> String {
    pg_stats_in(c, "public", relation)
}

/// A string literal for test SQL.
fn lit(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn pg_stats_in(c: &Cluster, schema: &str, relation: &str) -> String {
    let ranges = if c.version() == PgVersion::V18 {
        ", range_length_histogram, range_empty_frac, range_bounds_histogram"
    } else {
        ""
    };
    c.psql(
        "app",
        &format!(
            "SELECT string_agg(concat_ws('|', attname, inherited, null_frac, avg_width, n_distinct, most_common_vals,
                    most_common_freqs, histogram_bounds, correlation, most_common_elems, most_common_elem_freqs,
                    elem_count_histogram{ranges}), E'\\n' ORDER BY attname, inherited)
             FROM pg_stats WHERE schemaname = {} AND tablename = {}",
            lit(schema),
            lit(relation)
        ),
    )
}

fn one(c: &Cluster, sql: &str) -> String {
    c.psql("app", sql)
}

fn analyze_count(c: &Cluster, table: &str) -> String {
    one(c, &format!("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = '{table}'"))
}

fn drop_copy_objects(source: &Cluster) {
    source.psql(
        "app",
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'pgferry\\_main\\_\\_%';
         DROP PUBLICATION pgferry_main, pgferry_main__insert_only;",
    );
}

#[test]
fn a_18_target_carries_the_sources_statistics_and_analyzes_what_it_cannot_carry() {
    let source = quiet(PgVersion::V15);
    load(&source);
    let target = quiet(PgVersion::V18);
    target.create_database("app");
    let stdout = stdout_of_success(&copy(&source, &target));

    for table in ["carried", "part_a", "family", "family_kid"] {
        let reltuples = format!("SELECT reltuples FROM pg_class WHERE relname = '{table}'");
        assert_eq!(one(&target, &reltuples), one(&source, &reltuples), "{table}'s row estimate");
        assert_ne!(one(&target, &reltuples), "-1");
        assert_eq!(pg_stats(&target, table), pg_stats(&source, table), "{table}'s column statistics");
        assert_eq!(analyze_count(&target, table), "0", "{table} was not analyzed: its statistics were carried");
    }
    assert!(pg_stats(&source, "carried").contains("{"), "the compared statistics hold values");
    assert_eq!(
        one(&target, "SELECT reltuples || '/' || (SELECT count(*) FROM part_a) FROM pg_class WHERE relname = 'part_a'"),
        "3000/3500",
        "the source's estimate, kept through the partition's index build"
    );
    assert!(pg_stats(&target, "family").contains("|t|"), "the inheritance tree's statistics were carried");
    // The copied rows count as changes since the last ANALYZE: autovacuum
    // analyzes the carried tables on the target later, off the copy's path.
    assert_eq!(one(&target, "SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = 'carried'"), "10000");
    assert_eq!(pg_stats(&target, "carried_lower"), pg_stats(&source, "carried_lower"), "the expression index's");
    assert!(!pg_stats(&target, "carried_lower").is_empty());
    // The pages are the copy's own (the source's hold the deleted rows' space),
    // the visible share the source's.
    let pages =
        "SELECT relpages, pg_relation_size('carried') / 8192, relallvisible FROM pg_class WHERE relname = 'carried'";
    let (on_source, on_target) = (one(&source, pages), one(&target, pages));
    let [source_pages, _, source_visible]: [i64; 3] = numbers(&on_source);
    let [target_pages, target_size, target_visible]: [i64; 3] = numbers(&on_target);
    assert_eq!(target_pages, target_size, "relpages is the target's size: {on_target}");
    assert!(target_pages < source_pages, "the copy is smaller: {on_source} / {on_target}");
    assert_eq!(
        target_visible,
        (source_visible * target_pages + source_pages / 2) / source_pages,
        "{on_source} / {on_target}"
    );

    for table in ["never", "extended", "spans"] {
        assert_eq!(analyze_count(&target, table), "1", "{table} was analyzed on the target");
        assert_ne!(pg_stats(&target, table), "", "{table} has statistics");
    }
    assert_ne!(one(&target, "SELECT reltuples FROM pg_class WHERE relname = 'never'"), "-1");
    assert_eq!(
        one(&target, "SELECT n_distinct IS NOT NULL FROM pg_stats_ext WHERE statistics_name = 'extended_ab'"),
        "t",
        "the extended statistics were built"
    );
    assert!(
        one(
            &target,
            "SELECT range_bounds_histogram IS NOT NULL FROM pg_stats WHERE tablename = 'spans' AND attname = 'r'"
        ) == "t",
        "the range statistics a 15 source does not show were gathered"
    );
    assert_ne!(
        one(&target, "SELECT count(*) FROM pg_stats WHERE tablename = 'measures' AND inherited"),
        "0",
        "the partitioned parent was analyzed"
    );
    // Names that need quoting reach the functions whole (as values, not SQL).
    for name in HOSTILE_NAMES {
        let count = format!(
            "SELECT analyze_count FROM pg_stat_user_tables WHERE schemaname = {} AND relname = {}",
            lit(HOSTILE_SCHEMA),
            lit(name)
        );
        assert_eq!(one(&target, &count), "0", "{name} was carried");
        let stats = pg_stats_in(&target, HOSTILE_SCHEMA, name);
        assert!(stats.contains("v0") && stats.contains("v6"), "{name}: {stats}");
        assert_eq!(stats, pg_stats_in(&source, HOSTILE_SCHEMA, name), "{name}'s statistics");
        let index = format!(
            "SELECT count(*) FROM pg_stats s JOIN pg_index x ON x.indexrelid = format('%I.%I', s.schemaname, s.tablename)::regclass
             WHERE x.indrelid = format('%I.%I', {}, {})::regclass",
            lit(HOSTILE_SCHEMA),
            lit(name)
        );
        assert_eq!(one(&target, &index), "1", "{name}'s expression index statistics");
    }
    // The summary says what was carried and what analyzed, and why.
    assert!(
        stdout.contains("statistics: 14 table(s) carried from the source in ")
            && stdout.contains(", 4 analyzed on the target in "),
        "{stdout}"
    );
    assert!(stdout.contains("analyzed 1: never analyzed on the source"), "{stdout}");
    assert!(stdout.contains("analyzed 1: it has extended statistics"), "{stdout}");
    assert!(stdout.contains("analyzed 1: a column's type keeps statistics"), "{stdout}");
    assert!(stdout.contains("analyzed 1: partitioned"), "{stdout}");

    // A 15 target analyzes every table, as before.
    drop_copy_objects(&source);
    let older = quiet(PgVersion::V15);
    older.create_database("app");
    let stdout = stdout_of_success(&copy(&source, &older));
    for table in ["carried", "part_a", "family", "never", "extended", "spans"] {
        assert_ne!(analyze_count(&older, table), "0", "{table} was analyzed on the 15 target");
    }
    assert!(
        stdout.contains("statistics: 0 table(s) carried from the source in ")
            && stdout.contains(", 18 analyzed on the target in "),
        "{stdout}"
    );
    assert!(stdout.contains("analyzed 16: the target is older than PostgreSQL 18"), "{stdout}");
    assert!(stdout.contains("analyzed 1: it has extended statistics"), "{stdout}");
    assert_eq!(
        one(&older, "SELECT n_distinct IS NOT NULL FROM pg_stats_ext WHERE statistics_name = 'extended_ab'"),
        "t",
        "analyzed after post-data, which made the statistics object"
    );
}

#[test]
fn a_18_source_carries_range_statistics_and_the_frozen_share() {
    let source = quiet(PgVersion::V18);
    load(&source);
    source.psql("app", "VACUUM (FREEZE) carried");
    let target = quiet(PgVersion::V18);
    target.create_database("app");
    let stdout = stdout_of_success(&copy(&source, &target));
    for table in ["carried", "part_a", "family", "spans"] {
        let reltuples = format!("SELECT reltuples FROM pg_class WHERE relname = '{table}'");
        assert_eq!(one(&target, &reltuples), one(&source, &reltuples), "{table}'s row estimate");
        assert_eq!(pg_stats(&target, table), pg_stats(&source, table), "{table}'s column statistics");
        assert_eq!(analyze_count(&target, table), "0", "{table}'s statistics were carried");
    }
    assert!(pg_stats(&target, "spans").contains("{[") || pg_stats(&target, "spans").contains("\"["), "range bounds");
    let frozen = "SELECT relallfrozen::float8 / relpages FROM pg_class WHERE relname = 'carried'";
    let share: f64 = one(&target, frozen).parse().expect("a share");
    assert!((share - one(&source, frozen).parse::<f64>().expect("a share")).abs() < 0.05, "the frozen share: {share}");
    assert!(share > 0.5, "the source froze the table: {share}");
    assert!(
        stdout.contains("statistics: 15 table(s) carried from the source in ")
            && stdout.contains(", 3 analyzed on the target in "),
        "{stdout}"
    );
}

/// Statistics the target's functions refuse (here: an enum label renamed on the
/// target between the source's statistics being read and written, so the most
/// common values no longer parse) leave the table to ANALYZE.
#[test]
fn statistics_the_target_refuses_are_gathered_by_analyze_instead() {
    let source = quiet(PgVersion::V15);
    source.create_database("app");
    source.psql(
        "app",
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
         CREATE TABLE moody (id int PRIMARY KEY, feeling mood);
         INSERT INTO moody SELECT g, (ARRAY['sad', 'ok', 'happy'])[1 + g % 3]::mood FROM generate_series(1, 3000) g;
         ANALYZE moody;",
    );
    let target = quiet(PgVersion::V18);
    target.create_database("app");
    let pause = tempfile::tempdir().unwrap();
    let copying = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["copy", "--source", &source.url("app"), "--target", &target.url("app")])
        .env("PGFERRY_PAUSE", format!("copy-before-statistics:{}", pause.path().display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let reached = pause.path().join("copy-before-statistics.reached");
    for _ in 0..600 {
        if reached.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(reached.exists(), "the copy read moody's statistics");
    target.psql("app", "ALTER TYPE mood RENAME VALUE 'sad' TO 'blue'");
    std::fs::write(pause.path().join("copy-before-statistics.go"), b"").unwrap();
    let stdout = stdout_of_success(&copying.wait_with_output().unwrap());
    assert_eq!(analyze_count(&target, "moody"), "1", "moody was analyzed after the refusal");
    assert!(
        pg_stats(&target, "moody").contains("{blue,") || pg_stats(&target, "moody").contains(",blue"),
        "fresh statistics"
    );
    assert!(
        stdout.contains("statistics: 0 table(s) carried from the source in ")
            && stdout.contains(", 1 analyzed on the target in "),
        "{stdout}"
    );
    assert!(stdout.contains("analyzed 1: the target refused part of the source's statistics"), "{stdout}");
}

fn numbers<const N: usize>(line: &str) -> [i64; N] {
    let values: Vec<i64> = line.split('|').map(|v| v.trim().parse().expect("a number")).collect();
    values.try_into().unwrap_or_else(|v: Vec<i64>| panic!("{N} numbers expected: {v:?}"))
}

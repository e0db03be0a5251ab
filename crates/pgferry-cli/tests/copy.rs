//! `pgferry copy` against real clusters: a database full of awkward types and
//! names comes out identical, the copy holds exactly its snapshot's state while
//! writes go on, and a copy killed half-way through a split table, rerun, ends
//! identical too.

use std::process::{Command, Output};
use std::thread;
use std::time::Duration;

use pgferry_testkit::{q, Cluster, PgVersion, HOSTILE_NAMES};

fn pgferry(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).envs(envs.iter().copied()).output().expect("run pgferry")
}

fn copy(source: &Cluster, target: &Cluster, extra: &[&str], envs: &[(&str, &str)]) -> Output {
    let (source_url, target_url) = (source.url("app"), target.url("app"));
    let mut args = vec!["copy", "--source", &source_url, "--target", &target_url];
    args.extend_from_slice(extra);
    pgferry(&args, envs)
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "pgferry failed ({:?}):\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A database with several schemas, hostile names, every common type, TOAST,
/// partitions, generated and identity columns and a table without a key.
fn load_rich_database(c: &Cluster) {
    c.create_database("app");
    c.psql(
        "app",
        "CREATE SCHEMA shop;
         CREATE TYPE shop.mood AS ENUM ('sad', 'ok', 'happy');
         CREATE DOMAIN shop.positive AS numeric CHECK (VALUE > 0);
         CREATE TYPE shop.pair AS (a int, b text);
         CREATE TABLE shop.customers (id bigserial PRIMARY KEY, name text NOT NULL, email text UNIQUE);
         CREATE TABLE shop.orders (
             id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             customer_id bigint NOT NULL REFERENCES shop.customers,
             total numeric(30,10), price shop.positive, mood shop.mood, pair shop.pair,
             at timestamptz, span interval, tags text[], doc jsonb, raw bytea, uid uuid, addr inet,
             bits bit varying(16), period tstzrange, nan numeric,
             doubled numeric GENERATED ALWAYS AS (total * 2) STORED);
         CREATE INDEX ON shop.orders (customer_id);
         CREATE TABLE shop.big_text (id int PRIMARY KEY, body text);
         CREATE TABLE shop.events (id int, at date NOT NULL, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
         CREATE TABLE shop.events_2024 PARTITION OF shop.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         CREATE TABLE shop.events_rest PARTITION OF shop.events DEFAULT;
         CREATE TABLE public.audit (at timestamptz DEFAULT now(), message text);
         CREATE UNLOGGED TABLE public.scratch (id int PRIMARY KEY, note text);
         INSERT INTO public.scratch SELECT g, 'note ' || g FROM generate_series(1, 300) g;
         CREATE SEQUENCE shop.free_counter INCREMENT -3 START 100 MINVALUE -1000 MAXVALUE 100;
         SELECT nextval('shop.free_counter'); SELECT nextval('shop.free_counter');
         INSERT INTO shop.customers (name, email) SELECT 'c' || g, 'c' || g || '@x' FROM generate_series(1, 500) g;
         INSERT INTO shop.orders (customer_id, total, price, mood, pair, at, span, tags, doc, raw, uid, addr, bits, period, nan)
         SELECT 1 + g % 500, 12345678901234567890.0123456789 / g, g, (ARRAY['sad','ok','happy'])[1 + g % 3]::shop.mood,
                ROW(g, 'p' || g)::shop.pair,
                CASE WHEN g = 1 THEN 'infinity'::timestamptz WHEN g = 2 THEN '-infinity' ELSE '2024-01-01'::timestamptz + g * interval '1 minute' END,
                g * interval '1 day 2 hours', ARRAY['a' || g, NULL, ''], jsonb_build_object('g', g, 'nested', jsonb_build_array(1, 'two', NULL)),
                decode(md5(g::text), 'hex'), md5(g::text)::uuid, ('10.0.' || (g % 255) || '.1/24')::inet,
                (g % 65536)::bit(16)::varbit, tstzrange('2024-01-01', '2024-01-01'::timestamptz + g * interval '1 hour'),
                CASE WHEN g % 7 = 0 THEN 'NaN'::numeric ELSE g END
         FROM generate_series(1, 3000) g;
         INSERT INTO shop.big_text SELECT g, string_agg(md5(g::text || i::text), '') FROM generate_series(1, 20) g, generate_series(1, 400) i GROUP BY g;
         INSERT INTO shop.events SELECT g, '2024-01-01'::date + g, 'e' || g FROM generate_series(1, 800) g;
         INSERT INTO public.audit (message) SELECT 'm' || g FROM generate_series(1, 100) g;
         INSERT INTO public.audit (message) SELECT 'm' || g FROM generate_series(1, 100) g;
         CREATE TABLE shop.visits (id int, at date, customer_id bigint REFERENCES shop.customers, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
         CREATE TABLE shop.visits_all PARTITION OF shop.visits DEFAULT;
         INSERT INTO shop.visits SELECT g, '2024-01-01'::date + g, 1 + g % 500 FROM generate_series(1, 200) g;
         ALTER TABLE shop.orders ADD CONSTRAINT orders_customer_loose FOREIGN KEY (customer_id) REFERENCES shop.customers NOT VALID;
         SELECT lo_from_bytea(0, 'small object'), lo_from_bytea(0, decode(repeat('ab', 300000), 'hex'));",
    );
    if c.version() == PgVersion::V18 {
        // New in 18: a foreign key that is declared but not enforced (never valid),
        // and a virtual generated column (computed when read, never stored).
        c.psql(
            "app",
            "CREATE TABLE shop.notes (id int PRIMARY KEY, customer_id bigint, twice bigint GENERATED ALWAYS AS (customer_id * 2) VIRTUAL,
                 CONSTRAINT notes_customer_unenforced FOREIGN KEY (customer_id) REFERENCES shop.customers NOT ENFORCED);
             INSERT INTO shop.notes VALUES (1, 1), (2, 999999);",
        );
    }
    for (i, name) in HOSTILE_NAMES.iter().enumerate() {
        let schema = if i % 2 == 0 { "public".to_string() } else { q(name) };
        if i % 2 == 1 {
            c.psql("app", &format!("CREATE SCHEMA {schema}"));
        }
        let table = format!("{schema}.{}", q(name));
        c.psql(
            "app",
            &format!(
                "CREATE TABLE {table} ({col} int PRIMARY KEY, {other} text);
                 INSERT INTO {table} SELECT g, 'v' || g FROM generate_series(1, 50) g;",
                col = q("id"),
                other = q(name)
            ),
        );
    }
}

fn sequences(c: &Cluster) -> String {
    c.psql(
        "app",
        "SELECT string_agg(schemaname || '.' || sequencename || '=' || coalesce(last_value::text, 'null'), ',' ORDER BY schemaname, sequencename)
         FROM pg_sequences WHERE schemaname <> 'pgferry'",
    )
}

fn large_objects(c: &Cluster) -> String {
    c.psql("app", "SELECT string_agg(oid || ':' || md5(lo_get(oid)), ',' ORDER BY oid) FROM pg_largeobject_metadata")
}

/// The schema as pg_dump (of the newer version) prints it.
fn schema(c: &Cluster, pg_dump: PgVersion) -> String {
    let out = pg_dump
        .client_command("pg_dump")
        .args(["--schema-only", "--exclude-schema=pgferry", "--no-publications", "-h"])
        .arg(c.socket_dir())
        .args(["-p", &c.port().to_string(), "-U", "postgres", "app"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict") && !l.starts_with("-- Dumped"))
        .map(without_not_null_name)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The relations (tables, partitioned tables, expression indexes) that have
/// statistics.
fn analyzed(c: &Cluster) -> String {
    c.psql(
        "app",
        "SELECT string_agg(DISTINCT s.starelid::regclass::text, ',') FROM pg_statistic s
         JOIN pg_class c ON c.oid = s.starelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry') AND n.nspname NOT LIKE 'pg\\_%'",
    )
}

/// PostgreSQL 18 names NOT NULL constraints, and a table restored on 18 gets
/// names derived by 18's rules, which pg_dump prints when they differ from the
/// default pattern (long table names). That is the server's naming, not a copy
/// difference, so `CONSTRAINT <name> NOT NULL` is read as `NOT NULL`.
fn without_not_null_name(line: &str) -> String {
    match (line.find(" CONSTRAINT "), line.ends_with(" NOT NULL,") || line.ends_with(" NOT NULL")) {
        (Some(at), true) => {
            let rest = &line[at + " CONSTRAINT ".len()..];
            match rest.find(" NOT NULL") {
                Some(end) => format!("{}{}", &line[..at], &rest[end..]),
                None => line.to_string(),
            }
        }
        _ => line.to_string(),
    }
}

fn assert_same_lines(left: &str, right: &str, what: &str) {
    for (i, (l, r)) in left.lines().zip(right.lines()).enumerate() {
        assert_eq!(l, r, "{what}: first difference at line {}", i + 1);
    }
    assert_eq!(left.lines().count(), right.lines().count(), "{what}: line counts differ");
}

#[test]
fn a_rich_database_comes_out_identical_from_15_to_15_and_18_and_from_18_to_18() {
    for (from, to) in [(PgVersion::V15, &[PgVersion::V15, PgVersion::V18][..]), (PgVersion::V18, &[PgVersion::V18][..])]
    {
        let source = Cluster::start(from);
        load_rich_database(&source);
        for &version in to {
            copies_identically(&source, version);
        }
    }
}

/// Copies the rich database from `source` into a new, empty cluster of `version`
/// and compares everything, then drops the copy's slot and publications.
fn copies_identically(source: &Cluster, version: PgVersion) {
    let target = Cluster::start(version);
    let pair = format!("{:?} -> {version:?}", source.version());
    target.create_database("app");
    // Both clients installed, as on an operator's machine with the latest packages
    // beside the server's: pgferry must pick one that reads the source and that
    // the target accepts (pg_restore 18 into a 15 target fails on its first SET).
    let path = format!("{}:{}", PgVersion::V18.bin_dir().display(), std::env::var("PATH").unwrap_or_default());
    let envs = [("PATH", path.as_str())];
    let out = copy(source, &target, &["--jobs", "2", "--split-larger-than", "64kB"], &envs);
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("change capture starts at"), "{stdout}");
    // The summary: per table its rows, bytes, pieces and time.
    let header = stdout.lines().next().unwrap_or_default().split_whitespace().collect::<Vec<_>>();
    assert_eq!(header, ["table", "rows", "bytes", "pieces", "time"], "{stdout}");
    assert!(stdout.lines().nth(1).is_some_and(|l| l.trim_end().ends_with(" s")), "{stdout}");
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"), "content differs on {pair}");
    assert_eq!(sequences(source), sequences(&target), "sequences differ on {pair}");
    assert_eq!(large_objects(source), large_objects(&target), "large objects differ on {pair}");
    assert_same_lines(&schema(source, version), &schema(&target, version), &format!("schema on {pair}"));
    assert_eq!(target.psql("app", "SELECT phase FROM pgferry.migration"), "copied");
    source.psql("app", "ANALYZE");
    assert_eq!(analyzed(&target), analyzed(source), "statistics on {pair}");
    // Foreign keys end as on the source: validated, and the NOT VALID one not
    // (the schema comparison above says so too).
    let keys = "SELECT string_agg(conname || '=' || convalidated, ',' ORDER BY conname) FROM pg_constraint WHERE contype = 'f' AND conparentid = 0";
    assert_eq!(target.psql("app", keys), source.psql("app", keys), "foreign keys on {pair}");
    assert!(source.psql("app", keys).contains("orders_customer_loose=false"));
    // The slot and the publications are there for change capture, with the
    // keyless table in the insert-only publication.
    assert_eq!(
        source.psql("app", "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgferry\\_main\\_\\_%'"),
        "1"
    );
    assert_eq!(
        source.psql(
            "app",
            "SELECT string_agg(tablename, ',') FROM pg_publication_tables WHERE pubname = 'pgferry_main__insert_only'"
        ),
        "audit"
    );
    // The source keeps accepting UPDATE and DELETE on the keyless table.
    source.psql("app", "UPDATE public.audit SET message = message WHERE false; DELETE FROM public.audit WHERE false;");
    source.psql(
        "app",
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'pgferry\\_main\\_\\_%';
             DROP PUBLICATION pgferry_main, pgferry_main__insert_only;",
    );
}

#[test]
fn a_pg_dump_older_than_the_source_is_refused_before_anything_changes() {
    let stderr = refused_copy(PgVersion::V18, PgVersion::V15, PgVersion::V15);
    assert!(stderr.contains("pg_dump is version 15 but the source runs 18"), "{stderr}");
    assert!(stderr.contains("postgresql-client-18") && stderr.contains("PGFERRY_PG_BIN"), "{stderr}");
}

/// pg_restore 17 and newer start with `SET transaction_timeout`, which servers
/// before 17 reject: with only the 18 client, a copy into 15 is refused up front.
#[test]
fn a_pg_restore_the_target_rejects_is_refused_before_anything_changes() {
    let stderr = refused_copy(PgVersion::V15, PgVersion::V15, PgVersion::V18);
    assert!(
        stderr.contains("pg_restore is version 18 but the target runs 15") && stderr.contains("transaction_timeout"),
        "{stderr}"
    );
    assert!(stderr.contains("postgresql-client-15") && stderr.contains("nothing was changed"), "{stderr}");
}

/// A copy from a `from` source to a `to` target with only the `client` version's
/// pg_dump and pg_restore: it must exit 1 having changed nothing on either side.
/// Returns what it printed on stderr.
fn refused_copy(from: PgVersion, to: PgVersion, client: PgVersion) -> String {
    let source = Cluster::start(from);
    source.create_database("app");
    source.psql("app", "CREATE TABLE t (id int PRIMARY KEY)");
    let target = Cluster::start(to);
    target.create_database("app");
    let bin = client.bin_dir();
    let out = copy(&source, &target, &[], &[("PGFERRY_PG_BIN", bin.to_str().unwrap())]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(source.psql("app", "SELECT count(*) FROM pg_replication_slots"), "0");
    assert_eq!(source.psql("app", "SELECT count(*) FROM pg_publication"), "0");
    assert_eq!(target.psql("app", "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgferry'"), "0");
    stderr
}

#[test]
fn a_non_empty_target_is_refused_and_left_alone() {
    let source = Cluster::start(PgVersion::V15);
    source.create_database("app");
    let target = Cluster::start(PgVersion::V15);
    target.create_database("app");
    target.psql("app", "CREATE TABLE precious (id int); INSERT INTO precious VALUES (1)");
    let out = copy(&source, &target, &[], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already holds 1 table(s)"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
    assert_eq!(target.psql("app", "SELECT count(*) FROM precious"), "1");
    assert_eq!(source.psql("app", "SELECT count(*) FROM pg_replication_slots"), "0");
}

fn load_split_table(c: &Cluster) {
    c.create_database("app");
    c.psql(
        "app",
        "CREATE TABLE items (id bigint PRIMARY KEY, version int NOT NULL DEFAULT 0, pad text);
         INSERT INTO items SELECT g, 0, repeat('x', 200) FROM generate_series(1, 40000) g;
         CREATE TABLE counters (id int PRIMARY KEY); INSERT INTO counters SELECT generate_series(1, 10);",
    );
}

#[test]
fn writes_during_the_copy_never_reach_the_target_and_nothing_before_is_missed() {
    let source = Cluster::start(PgVersion::V15);
    load_split_table(&source);
    let target = Cluster::start(PgVersion::V15);
    target.create_database("app");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let url = source.url("app");
        let stop = stop.clone();
        thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                let mut next = 40001i64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    // One transaction: a new row at the end and a move of an old one.
                    client
                        .batch_execute(&format!(
                            "BEGIN; INSERT INTO items VALUES ({next}, 0, 'new');
                             UPDATE items SET version = version + 1 WHERE id = {}; COMMIT;",
                            1 + next % 40000
                        ))
                        .await
                        .unwrap();
                    next += 1;
                }
                next
            })
        })
    };
    // Wait until the writer is running, so its writes straddle the snapshot.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while source.psql("app", "SELECT max(id) FROM items").parse::<i64>().unwrap() < 40010 {
        assert!(std::time::Instant::now() < deadline, "the writer did not start");
        thread::sleep(Duration::from_millis(20));
    }
    let out = copy(&source, &target, &["--jobs", "2", "--split-larger-than", "1MB"], &[]);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().unwrap();
    assert_ok(&out);
    // A consistent snapshot holds a prefix of the writer's transactions: new ids
    // 40001..=k with no gap, and exactly k - 40000 updates applied.
    let row = target.psql("app", "SELECT count(*), count(DISTINCT id), max(id), coalesce(sum(version), 0) FROM items");
    let v: Vec<i64> = row.split('|').map(|x| x.parse().unwrap()).collect();
    let (count, distinct, max, versions) = (v[0], v[1], v[2], v[3]);
    assert_eq!(count, distinct, "a row was copied twice");
    assert_eq!(count, max, "ids have a gap: a row written before the snapshot is missing");
    assert_eq!(versions, max - 40000, "updates do not match the inserts of the same transactions");
    assert!(
        source.psql("app", "SELECT max(id) FROM items").parse::<i64>().unwrap() > max,
        "the writer kept going after the snapshot"
    );
}

#[test]
fn a_copy_killed_inside_a_split_table_resumes_to_an_identical_target() {
    let source = Cluster::start(PgVersion::V15);
    load_split_table(&source);
    let target = Cluster::start(PgVersion::V15);
    target.create_database("app");
    let args = ["--jobs", "1", "--split-larger-than", "1MB"];
    let out = copy(&source, &target, &args, &[("PGFERRY_FAILPOINT", "copy-after-chunk:3")]);
    assert_eq!(out.status.code(), Some(137), "{}", String::from_utf8_lossy(&out.stderr));
    let chunks: i64 = target.psql("app", "SELECT count(*) FROM pgferry.copied_chunk").parse().unwrap();
    assert_eq!(chunks, 3, "three pieces committed before the kill");
    assert_eq!(target.psql("app", "SELECT phase FROM pgferry.migration"), "data");
    // A write between the runs: the rerun copies unfinished tables under a new snapshot.
    source.psql("app", "INSERT INTO items VALUES (90001, 0, 'between runs')");
    let out = copy(&source, &target, &args, &[]);
    assert_ok(&out);
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"));
    assert_same_lines(&schema(&source, PgVersion::V15), &schema(&target, PgVersion::V15), "schema");
    // Tables redone under the fresh snapshot carry its position, later than the slot's.
    assert_eq!(
        target.psql(
            "app",
            "SELECT bool_and(c.snapshot_lsn > m.slot_lsn) FROM pgferry.copied_chunk c JOIN pgferry.migration m ON m.name = c.migration WHERE c.table_name = 'items'"
        ),
        "t"
    );
}

/// The copy's private work directory, under `tmp`: this user's parent and every
/// directory in it 0700, every file 0600 (the schema dump can hold secrets).
/// Returns how many entries the parent holds.
fn private_work_entries(tmp: &std::path::Path) -> usize {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let parent = tmp.join(format!("pgferry-{uid}"));
    let mode = |p: &std::path::Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&parent), 0o700, "{}", parent.display());
    let mut count = 0;
    for dir in std::fs::read_dir(&parent).unwrap() {
        let dir = dir.unwrap().path();
        count += 1;
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }
    count
}

#[test]
fn a_copy_killed_at_each_step_boundary_resumes_to_an_identical_target() {
    let source = Cluster::start(PgVersion::V15);
    load_split_table(&source);
    source.psql("app", "CREATE INDEX items_version ON items (version); CREATE TABLE child (id int PRIMARY KEY, item bigint REFERENCES items);
                        INSERT INTO child SELECT g, g FROM generate_series(1, 100) g;");
    let args = ["--jobs", "2", "--split-larger-than", "1MB"];
    let tmp = tempfile::tempdir().unwrap();
    let tmpdir = tmp.path().to_str().unwrap();
    for failpoint in [
        "copy-after-created:1",
        "copy-after-slot:1",
        "copy-after-chunk:2",
        "copy-after-index:1",
        "copy-after-data:1",
        "copy-after-foreign-keys-added:1",
    ] {
        let target = Cluster::start(PgVersion::V15);
        target.create_database("app");
        let out = copy(&source, &target, &args, &[("PGFERRY_FAILPOINT", failpoint), ("TMPDIR", tmpdir)]);
        assert_eq!(out.status.code(), Some(137), "{failpoint}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(private_work_entries(tmp.path()), 1, "{failpoint}: the killed run's directory, private");
        let out = copy(&source, &target, &args, &[("TMPDIR", tmpdir)]);
        assert_ok(&out);
        assert_eq!(private_work_entries(tmp.path()), 0, "{failpoint}: the rerun removed it, and its own");
        assert_eq!(source.fingerprints("app"), target.fingerprints("app"), "{failpoint}");
        assert_same_lines(&schema(&source, PgVersion::V15), &schema(&target, PgVersion::V15), failpoint);
        assert_eq!(target.psql("app", "SELECT phase FROM pgferry.migration"), "copied", "{failpoint}");
        source.psql("app", "ANALYZE");
        assert_eq!(analyzed(&target), analyzed(&source), "statistics after {failpoint}");
        source.psql("app", "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'pgferry\\_main\\_\\_%';
             DROP PUBLICATION pgferry_main, pgferry_main__insert_only;");
    }
}

/// Nothing of a refused copy is left on `c`: no slot, publication or pgferry schema.
fn assert_untouched(c: &Cluster, what: &str) {
    assert_eq!(c.psql("app", "SELECT count(*) FROM pg_replication_slots"), "0", "{what}: a slot");
    assert_eq!(c.psql("app", "SELECT count(*) FROM pg_publication"), "0", "{what}: a publication");
    assert_eq!(
        c.psql("app", "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgferry'"),
        "0",
        "{what}: pgferry's schema"
    );
}

#[test]
fn the_source_as_its_own_target_is_refused_under_any_spelling() {
    let source = Cluster::start(PgVersion::V15);
    source.create_database("app");
    source.psql("app", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)");
    let by_socket = format!("host={} port={} user=postgres dbname=app", source.socket_dir().display(), source.port());
    let by_localhost = format!("postgresql://postgres@localhost:{}/app?sslmode=disable", source.port());
    for target in [&by_socket, &by_localhost] {
        for command in ["copy", "start"] {
            let out = pgferry(&[command, "--source", &source.url("app"), "--target", target], &[]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{command} to {target}: {stderr}");
            assert!(stderr.contains("are the same database") && stderr.contains("hint:"), "{stderr}");
            assert_untouched(&source, command);
        }
    }
}

#[test]
fn a_source_without_logical_wal_is_refused_and_left_alone() {
    let source = Cluster::builder(PgVersion::V15).setting("wal_level", "replica").start();
    source.create_database("app");
    source.psql("app", "CREATE TABLE t (id int PRIMARY KEY)");
    let target = Cluster::start(PgVersion::V15);
    target.create_database("app");
    let out = copy(&source, &target, &[], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("[wal_level]") && stderr.contains("nothing was changed"), "{stderr}");
    assert_untouched(&source, "source");
    assert_untouched(&target, "target");
}

#[test]
fn zero_workers_are_refused_before_anything_runs() {
    for flag in ["--jobs", "--index-jobs"] {
        let out = pgferry(&["copy", "--source", "host=/nonexistent", "--target", "host=/nonexistent", flag, "0"], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(flag) && stderr.contains("must be at least 1"), "{stderr}");
    }
    let out =
        pgferry(&["copy", "--source", "host=/nonexistent", "--target", "host=/nonexistent"], &[("PGFERRY_JOBS", "0")]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Two copies of one migration at once (#17, F9) would load the same target from
/// two snapshots: the second is refused (exit 1, naming the first) and changes
/// nothing; the first finishes to an identical target.
#[test]
fn a_second_copy_of_the_same_migration_is_refused_while_the_first_runs() {
    let (source, target) = (Cluster::start(PgVersion::V15), Cluster::start(PgVersion::V15));
    load_split_table(&source);
    target.create_database("app");
    let pause = tempfile::tempdir().unwrap();
    let (source_url, target_url) = (source.url("app"), target.url("app"));
    let first = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["copy", "--source", &source_url, "--target", &target_url])
        .env("PGFERRY_PAUSE", format!("copy-before-lock:{}", pause.path().display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let reached = pause.path().join("copy-before-lock.reached");
    for _ in 0..600 {
        if reached.exists() {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(reached.exists(), "the first copy reached its reads");
    let slots = "SELECT count(*) FROM pg_replication_slots";
    let second = copy(&source, &target, &[], &[]);
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(err.contains("another pgferry process is running migration main"), "{err}");
    assert_eq!(source.psql("app", slots), "1", "no second slot");
    std::fs::write(pause.path().join("copy-before-lock.go"), b"").unwrap();
    let out = first.wait_with_output().unwrap();
    assert_ok(&out);
    let content = "SELECT count(*) || ':' || coalesce(sum(hashtext(t::text)::bigint), 0) FROM items t";
    assert_eq!(source.psql("app", content), target.psql("app", content));
}

/// A database whose name pg_restore could read as a connection string (`=`, a
/// quote, a backslash) is restored into that database (was: "invalid
/// connection option" and a rerun failed the same).
#[test]
fn a_database_named_like_a_connection_string_is_copied() {
    let (source, target) = (Cluster::start(PgVersion::V15), Cluster::start(PgVersion::V15));
    let name = r"a=b 'c' \d";
    source.create_database(name);
    target.create_database(name);
    // psql reads its -d the same way: given as a connection string.
    let db = r"dbname='a=b \'c\' \\d'";
    source.psql(
        db,
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, g::text FROM generate_series(1, 50) g",
    );
    let encoded = "a%3Db%20%27c%27%20%5Cd";
    assert_ok(&pgferry(&["copy", "--source", &source.url(encoded), "--target", &target.url(encoded)], &[]));
    assert_eq!(target.psql(db, "SELECT count(*), sum(id) FROM t"), "50|1275");
}

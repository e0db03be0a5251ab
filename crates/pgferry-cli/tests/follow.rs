//! `pgferry follow` against real clusters: every change kind and every common type
//! reaches the target exactly (15 -> 15 and 15 -> 18), a schema change stops apply
//! with the table and column named, and a random workload applied while pgferry is
//! killed again and again, or while either server restarts, ends with a target
//! identical row for row, with nothing applied twice; with parallel apply
//! (`--apply-lanes 4`) too, killed between the lanes' commits.

use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pgferry_testkit::{Cluster, PgVersion};

fn pgferry(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).envs(envs.iter().copied()).output().expect("run pgferry")
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

/// `copy`, with the source's own pg_dump (it must be at least as new as the source).
fn copy(source: &Cluster, target: &Cluster, name: &str) {
    let (s, t) = (source.url("app"), target.url("app"));
    let bin = source.version().bin_dir();
    assert_ok(&pgferry(
        &["copy", "--source", &s, "--target", &t, "--name", name],
        &[("PGFERRY_PG_BIN", bin.to_str().unwrap())],
    ));
}

fn follow_args<'a>(s: &'a str, t: &'a str, name: &'a str) -> Vec<&'a str> {
    vec!["follow", "--source", s, "--target", t, "--name", name]
}

/// `follow --until-caught-up`.
fn catch_up(source: &Cluster, target: &Cluster, name: &str) -> Output {
    catch_up_with(source, target, name, &[])
}

/// `follow --until-caught-up` with more arguments.
fn catch_up_with(source: &Cluster, target: &Cluster, name: &str, more: &[&str]) -> Output {
    let (s, t) = (source.url("app"), target.url("app"));
    let mut args = follow_args(&s, &t, name);
    args.push("--until-caught-up");
    args.extend(more);
    pgferry(&args, &[])
}

/// `follow` in the background, until killed.
fn spawn_follow(source: &Cluster, target: &Cluster, name: &str, envs: &[(&str, &str)]) -> Child {
    spawn_follow_with(source, target, name, envs, &[])
}

/// `follow` in the background with more arguments, until killed.
fn spawn_follow_with(source: &Cluster, target: &Cluster, name: &str, envs: &[(&str, &str)], more: &[&str]) -> Child {
    let (s, t) = (source.url("app"), target.url("app"));
    Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(follow_args(&s, &t, name))
        .args(more)
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pgferry follow")
}

/// One table per replica identity, every common type, TOAST, identity ALWAYS,
/// a generated column, partitions, a foreign key and a keyless table.
const SCHEMA: &str = "
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE DOMAIN positive AS numeric CHECK (VALUE > 0);
    CREATE TYPE pair AS (a int, b text);
    CREATE TABLE kv (id bigint PRIMARY KEY, n numeric, f float8, r real, t timestamptz, ts timestamp, d date, tm time,
        i interval, arr text[], na numeric[], j jsonb, js json, b bytea, m mood, pos positive, p pair, rng tstzrange,
        ir int4range, u uuid, ip inet, cidr cidr, mac macaddr, bits varbit, fixed bit(4), money money, pt point,
        x xml, big text);
    CREATE TABLE by_index (code text NOT NULL, v int, note text);
    CREATE UNIQUE INDEX by_index_code ON by_index (code);
    ALTER TABLE by_index REPLICA IDENTITY USING INDEX by_index_code;
    CREATE TABLE full_dup (a int, b text, j json, pt point, big text);
    ALTER TABLE full_dup REPLICA IDENTITY FULL;
    CREATE TABLE audit (seq bigint, at timestamptz DEFAULT now(), message text);
    CREATE TABLE ident (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text,
        doubled int GENERATED ALWAYS AS (length(v) * 2) STORED);
    CREATE TABLE parted (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
    CREATE TABLE parted_2024 PARTITION OF parted FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
    CREATE TABLE parted_rest PARTITION OF parted DEFAULT;
    CREATE TABLE parent (id int PRIMARY KEY, v text);
    CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent ON DELETE CASCADE);
    CREATE TABLE hot (k int PRIMARY KEY, v int, big text);
    CREATE TABLE swap (id int PRIMARY KEY, code int NOT NULL UNIQUE, prev int);
    INSERT INTO kv (id, n, big) SELECT g, g, repeat(md5(g::text), 3) FROM generate_series(1, 200) g;
    INSERT INTO by_index SELECT 'c' || g, g FROM generate_series(1, 50) g;
    INSERT INTO full_dup SELECT g % 10, 'x', '{\"k\": 1}', point(1, 2) FROM generate_series(1, 40) g;
    INSERT INTO ident (v) SELECT 'v' || g FROM generate_series(1, 20) g;
    INSERT INTO parted SELECT g, '2024-01-01'::date + g * 3, 'p' FROM generate_series(1, 200) g;
    INSERT INTO parent SELECT g FROM generate_series(1, 20) g;
    INSERT INTO child SELECT g, g FROM generate_series(1, 20) g;
    INSERT INTO hot SELECT g, 0, (SELECT string_agg(md5(g::text || x::text), '') FROM generate_series(1, 300) x) FROM generate_series(1, 5) g;
    INSERT INTO swap SELECT g, g FROM generate_series(1, 10) g;";

/// Two rows exchange their unique codes, each statement valid on its own: a
/// target that applied the net result in one statement would break the unique
/// index on the way, so `swap` must be applied change by change.
fn swap_codes(a: u64, b: u64) -> String {
    format!(
        "UPDATE swap SET prev = code, code = -code - 1000000 WHERE id IN ({a}, {b});
         UPDATE swap SET code = (SELECT prev FROM swap WHERE id = {b}) WHERE id = {a};
         UPDATE swap SET code = (SELECT prev FROM swap WHERE id = {a}) WHERE id = {b};"
    )
}

/// A few rows changed many times in one transaction: updated (leaving a
/// TOASTed value unchanged), deleted and inserted again, updated once more.
fn churn_hot(a: u64, b: u64, r: u64) -> String {
    format!(
        "UPDATE hot SET v = v + 1 WHERE k = {b}; DELETE FROM hot WHERE k = {a};
         INSERT INTO hot VALUES ({a}, {r}, CASE WHEN {r} % 2 = 0 THEN (SELECT string_agg(md5(x::text), '') FROM generate_series(1, 300) x) END);
         UPDATE hot SET v = v * 2 WHERE k = {a}; UPDATE hot SET v = v + 1 WHERE k = {b};"
    )
}

fn load(c: &Cluster) {
    c.create_database("app");
    c.psql("app", SCHEMA);
}

/// Every change kind on every table, with values at the edges of their types.
const CHANGES: &str = r#"
    INSERT INTO kv VALUES (1001, 12345678901234567890.123456789012345678901234567890, 1.0000000000000002, 3.4028235e38,
        'infinity', '-infinity', 'infinity', '24:00:00', '1 year 2 mons -3 days 04:05:06.789012',
        ARRAY['a', NULL, '', 'quote"s', 'back\slash', 'comma,brace}'], ARRAY['NaN', '-0.000000000000000000001']::numeric[],
        '{"nested": {"a": [1, 2.50, null, "x"]}, "u": "\u00e9"}', '{"dup": 1, "dup": 2,   "space": true}',
        '\x00ff10'::bytea, 'happy', 0.000001, ROW(7, 'it''s, "x"'), '[2024-01-01, infinity)', 'empty',
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2001:db8::1/64', '10.1.0.0/16', '08:00:2b:01:02:03', B'10101', B'1100',
        '-12345.67', '(1.5,-2.25)', '<a b="1">t&amp;</a>', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 4000) g));
    INSERT INTO kv (id, n, f, t) VALUES (1002, 'NaN', '-Infinity', '-infinity'), (1003, NULL, 'NaN', '2024-02-29 23:59:59.999999+14');
    UPDATE kv SET n = n + 1 WHERE id = 1001;
    UPDATE kv SET id = 5001, f = 2.5 WHERE id = 1;
    UPDATE kv SET big = big || 'x' WHERE id = 2;
    DELETE FROM kv WHERE id IN (3, 1002);
    BEGIN; INSERT INTO kv (id) VALUES (6000); UPDATE kv SET id = 6001 WHERE id = 6000; UPDATE kv SET id = 6000 WHERE id = 6001; COMMIT;
    INSERT INTO by_index VALUES ('new', 1, NULL);
    UPDATE by_index SET code = 'c1-renamed', note = 'moved' WHERE code = 'c1';
    UPDATE by_index SET v = v * 10 WHERE code LIKE 'c2%';
    DELETE FROM by_index WHERE code = 'c5';
    INSERT INTO full_dup VALUES (1, 'x', '{"k": 1}', point(1, 2), NULL), (NULL, NULL, NULL, NULL, NULL), (NULL, NULL, NULL, NULL, NULL);
    INSERT INTO full_dup VALUES (99, 'toast', '[]', NULL, (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 4000) g));
    UPDATE full_dup SET b = 'one of many' WHERE ctid = (SELECT ctid FROM full_dup WHERE a = 1 LIMIT 1);
    DELETE FROM full_dup WHERE ctid = (SELECT ctid FROM full_dup WHERE a IS NULL LIMIT 1);
    UPDATE full_dup SET a = 100 WHERE a = 99;
    DELETE FROM full_dup WHERE ctid = (SELECT ctid FROM full_dup WHERE a = 2 LIMIT 1);
    INSERT INTO audit (seq, message) SELECT g, 'm' || g FROM generate_series(1, 30) g;
    INSERT INTO ident (v) VALUES ('after copy'), ('second');
    UPDATE ident SET v = 'longer value' WHERE id = 3;
    DELETE FROM ident WHERE id = 4;
    INSERT INTO parted VALUES (1000, '2030-01-01', 'rest'), (1001, '2024-06-01', '2024');
    UPDATE parted SET at = '2031-01-01' WHERE id = 1001;
    UPDATE parted SET v = 'changed' WHERE id = 5;
    DELETE FROM parted WHERE id = 6;
    TRUNCATE parent CASCADE;
    INSERT INTO parent VALUES (1, 'again'); INSERT INTO child VALUES (1, 1);
    TRUNCATE ident RESTART IDENTITY;
    INSERT INTO ident (v) VALUES ('restarted');
    INSERT INTO kv (id, n) SELECT g, g FROM generate_series(10000, 12000) g;
    DELETE FROM kv WHERE id BETWEEN 10000 AND 10500;"#;

/// Hot rows and a swap of unique values, in one source transaction and spread
/// over several.
fn hot_changes() -> String {
    let mut sql = String::from("BEGIN;");
    for r in 0..20 {
        sql.push_str(&churn_hot(r % 5 + 1, (r + 2) % 5 + 1, r));
        sql.push_str(&swap_codes(r % 10 + 1, (r + 3) % 10 + 1));
    }
    sql.push_str("COMMIT;");
    for r in 0..10 {
        sql.push_str(&churn_hot(r % 5 + 1, (r + 1) % 5 + 1, r + 7));
        sql.push_str(&swap_codes(r % 10 + 1, (r + 5) % 10 + 1));
    }
    sql
}

#[test]
fn every_change_kind_and_type_arrives_exactly_from_15_to_15_and_18() {
    every_change_kind_and_type_arrives_exactly(PgVersion::V15, &[(PgVersion::V15, "to15"), (PgVersion::V18, "to18")]);
}

/// The same from a PostgreSQL 18 source: 18's pgoutput.
#[test]
fn every_change_kind_and_type_arrives_exactly_from_18_to_18() {
    every_change_kind_and_type_arrives_exactly(PgVersion::V18, &[(PgVersion::V18, "to18")]);
}

/// New in 18: a virtual generated column, computed when read and never published.
const VIRTUAL_COLUMN: &str =
    "CREATE TABLE virt (id int PRIMARY KEY, n int, twice int GENERATED ALWAYS AS (n * 2) VIRTUAL);
    INSERT INTO virt SELECT g, g FROM generate_series(1, 10) g;";
const VIRTUAL_COLUMN_CHANGES: &str =
    "INSERT INTO virt (id, n) VALUES (11, 11); UPDATE virt SET n = n + 100 WHERE id <= 3;
    DELETE FROM virt WHERE id = 4;";

fn every_change_kind_and_type_arrives_exactly(from: PgVersion, to: &[(PgVersion, &'static str)]) {
    let source = Cluster::start(from);
    load(&source);
    if from == PgVersion::V18 {
        source.psql("app", VIRTUAL_COLUMN);
    }
    let targets: Vec<(Cluster, &str)> = to
        .iter()
        .copied()
        .map(|(version, name)| {
            let target = Cluster::start(version);
            target.create_database("app");
            copy(&source, &target, name);
            // A target trigger that would rewrite replicated rows must not fire.
            target.psql(
                "app",
                "CREATE FUNCTION public.rewrite() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.n := -1; RETURN NEW; END $$;
                 CREATE TRIGGER rewrite BEFORE INSERT OR UPDATE ON public.kv FOR EACH ROW EXECUTE FUNCTION public.rewrite();",
            );
            (target, name)
        })
        .collect();
    source.psql("app", CHANGES);
    source.psql("app", &hot_changes());
    if from == PgVersion::V18 {
        source.psql("app", VIRTUAL_COLUMN_CHANGES);
    }
    for (target, name) in &targets {
        let out = catch_up(&source, target, name);
        assert_ok(&out);
        assert!(String::from_utf8_lossy(&out.stdout).contains("applied up to"), "{out:?}");
        assert_eq!(source.fingerprints("app"), target.fingerprints("app"), "content differs for {name}");
        let stats = target.psql(
            "app",
            "SELECT string_agg(table_name || '=' || inserts || '/' || updates || '/' || deletes || '/' || truncates, ' ' ORDER BY table_name)
             FROM pgferry.apply_table_stats WHERE table_name IN ('audit', 'full_dup', 'ident')",
        );
        assert_eq!(stats, "audit=30/0/0/0 full_dup=4/2/2/0 ident=3/1/1/1", "{name}");
        // The slot's confirmed position reached the applied one.
        let slot = target.psql("app", &format!("SELECT slot_name FROM pgferry.migration WHERE name = '{name}'"));
        assert!(slot.starts_with(&format!("pgferry_{name}__")), "{slot}");
        let applied = target.psql("app", "SELECT applied_lsn FROM pgferry.apply_progress");
        assert!(
            wait_for(|| source.psql(
                "app",
                &format!(
                    "SELECT confirmed_flush_lsn >= '{applied}' FROM pg_replication_slots WHERE slot_name = '{slot}'"
                )
            ) == "t"),
            "the slot of {name} was not told about the applied position"
        );
        // Running again with nothing new is a no-op.
        assert_ok(&catch_up(&source, target, name));
        assert_eq!(source.fingerprints("app"), target.fingerprints("app"), "content differs for {name} after a rerun");
    }
}

fn wait_for(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn a_schema_change_stops_apply_with_table_and_column_named_and_loses_nothing() {
    let source = Cluster::start(PgVersion::V15);
    load(&source);
    let target = Cluster::start(PgVersion::V15);
    target.create_database("app");
    copy(&source, &target, "main");
    source.psql(
        "app",
        "INSERT INTO parent VALUES (100, 'before');
         ALTER TABLE parent ADD COLUMN extra text;
         INSERT INTO parent VALUES (101, 'after', 'x');",
    );
    let out = catch_up(&source, &target, "main");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"public\".\"parent\"") && stderr.contains("\"extra\""), "{stderr}");
    assert!(stderr.contains("hint:") && stderr.contains("rerun pgferry follow"), "{stderr}");
    target.psql("app", "ALTER TABLE parent ADD COLUMN extra text");
    assert_ok(&catch_up(&source, &target, "main"));
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"));
}

/// A tiny deterministic generator (xorshift), so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Random transactions on every table until `stop`; survives source restarts.
/// Writer `w` of `writers` inserts keys of its own; beside other writers its
/// transactions may deadlock or meet a key another one just took (rolled
/// back, as an application's would be). Returns how many committed.
fn spawn_writer(url: String, w: u64, writers: u64, seed: u64, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let mut rng = Rng(seed.wrapping_add(w.wrapping_mul(0x9e37_79b9)) | 1);
            let (mut committed, mut next) = (0u64, 100_000i64 + w as i64 * 10_000_000);
            'connect: while !stop.load(Ordering::SeqCst) {
                let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                tokio::spawn(conn);
                while !stop.load(Ordering::SeqCst) {
                    let mut sql = String::from("BEGIN;");
                    for _ in 0..1 + rng.below(4) {
                        next += 1;
                        let r = rng.below(2000) as i64;
                        sql.push_str(&match rng.below(16) {
                            0 | 1 => format!("INSERT INTO kv (id, n, t, arr, j, m) VALUES ({next}, {next}.{r}, now(), ARRAY['{r}', NULL], '{{\"r\": {r}}}', 'ok');"),
                            2 => format!("UPDATE kv SET n = n * 3, f = {r}.5 WHERE id = (SELECT min(id) FROM kv WHERE id >= {r});"),
                            3 => format!("UPDATE kv SET id = {next} WHERE id = (SELECT min(id) FROM kv WHERE id >= {r});"),
                            4 => format!("DELETE FROM kv WHERE id = (SELECT min(id) FROM kv WHERE id >= {r});"),
                            5 => format!("INSERT INTO by_index VALUES ('k{next}', {r}); UPDATE by_index SET code = 'r{next}' WHERE code = (SELECT min(code) FROM by_index);"),
                            6 => format!("DELETE FROM by_index WHERE code = (SELECT max(code) FROM by_index WHERE code < 'k{r}');"),
                            7 => format!("INSERT INTO full_dup VALUES ({}, 'x', '{{}}', point(0, {r}), NULL), ({}, 'x', '{{}}', NULL, NULL);", r % 5, r % 5),
                            8 => format!("UPDATE full_dup SET b = '{r}' WHERE ctid = (SELECT ctid FROM full_dup WHERE a = {} LIMIT 1); DELETE FROM full_dup WHERE ctid = (SELECT ctid FROM full_dup WHERE a = {} LIMIT 1);", r % 5, (r + 1) % 5),
                            9 | 10 => format!("INSERT INTO audit (seq, message) VALUES ({next}, 'w');"),
                            11 => format!("INSERT INTO ident (v) VALUES ('{r}'); UPDATE ident SET v = v || 'u' WHERE id = (SELECT max(id) FROM ident);"),
                            12 => format!("INSERT INTO parted VALUES ({next}, '2024-01-01'::date + {r}, 'w'); UPDATE parted SET at = at + 400 WHERE (id, at) = (SELECT id, at FROM parted WHERE id >= {r} ORDER BY id LIMIT 1);"),
                            13 => churn_hot(r as u64 % 5 + 1, r as u64 / 5 % 5 + 1, r as u64),
                            14 => {
                                let (a, step) = (r as u64 % 10, 1 + r as u64 / 10 % 9);
                                swap_codes(a + 1, (a + step) % 10 + 1)
                            }
                            _ if r < 20 => "TRUNCATE parent CASCADE; INSERT INTO parent VALUES (1, 't'); INSERT INTO child VALUES (1, 1);".to_string(),
                            _ => format!("INSERT INTO parent VALUES ({next}, 'p'); INSERT INTO child VALUES ({next}, {next});"),
                        });
                    }
                    sql.push_str("COMMIT;");
                    match client.batch_execute(&sql).await {
                        Ok(()) => committed += 1,
                        Err(e) if e.is_closed() || e.as_db_error().is_none() => continue 'connect,
                        Err(e) => {
                            let _ = client.batch_execute("ROLLBACK").await;
                            let code = e.as_db_error().map(|d| d.code().code()).unwrap_or_default();
                            if writers > 1 && matches!(code, "40P01" | "23505") {
                                continue;
                            }
                            assert!(code.starts_with("57"), "writer: {e}");
                            continue 'connect;
                        }
                    }
                }
            }
            committed
        })
    })
}

fn seed() -> u64 {
    let seed = std::env::var("PGFERRY_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("seed {seed} (PGFERRY_TEST_SEED replays it)");
    seed
}

#[test]
fn killed_ten_times_during_apply_then_resumed_the_target_is_identical() {
    let source = Cluster::start(PgVersion::V15);
    load(&source);
    let target = Cluster::start(PgVersion::V18);
    target.create_database("app");
    copy(&source, &target, "main");
    let seed = seed();
    let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(source.url("app"), 0, 1, seed, stop.clone());
    for round in 0..10 {
        // Half the kills are at a commit boundary (just before or just after the
        // target's commit), half at a random moment.
        let failpoint = match round % 4 {
            0 => Some(format!("apply-after-commit:{}", 2 + rng.below(3))),
            2 => Some(format!("apply-before-commit:{}", 2 + rng.below(3))),
            _ => None,
        };
        let envs: Vec<(&str, &str)> = failpoint.iter().map(|f| ("PGFERRY_FAILPOINT", f.as_str())).collect();
        let mut child = spawn_follow(&source, &target, "main", &envs);
        let deadline =
            Instant::now() + Duration::from_millis(if failpoint.is_some() { 15_000 } else { 300 + rng.below(1500) });
        while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        assert!(!status.success(), "round {round}: follow ended on its own: {status:?}");
    }
    stop.store(true, Ordering::SeqCst);
    let committed = writer.join().unwrap();
    assert!(committed > 100, "the writer committed only {committed} transactions");
    let out = catch_up(&source, &target, "main");
    assert_ok(&out);
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"), "seed {seed}");
    // The keyless table only gets inserts: any transaction applied twice would show.
    let audit = "SELECT count(*) || '/' || count(DISTINCT seq) FROM audit";
    assert_eq!(source.psql("app", audit), target.psql("app", audit), "seed {seed}");
}

/// A loaded source copied onto a target, one writer on the source and `follow`
/// applying, something already applied.
struct Following {
    source: Cluster,
    target: Cluster,
    seed: u64,
    stop: Arc<AtomicBool>,
    writer: Option<thread::JoinHandle<u64>>,
    child: Child,
}

impl Following {
    fn start(target: Cluster) -> Following {
        let source = Cluster::start(PgVersion::V15);
        load(&source);
        target.create_database("app");
        copy(&source, &target, "main");
        let seed = seed();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = Some(spawn_writer(source.url("app"), 0, 1, seed, stop.clone()));
        let child = spawn_follow(&source, &target, "main", &[]);
        let applied = || target.try_psql("app", "SELECT applied_lsn FROM pgferry.apply_progress").unwrap_or_default();
        assert!(wait_for(|| !applied().is_empty()), "nothing applied yet");
        Following { source, target, seed, stop, writer, child }
    }

    fn stop_writer(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(writer) = self.writer.take() {
            writer.join().unwrap();
        }
    }

    /// Ends the writer and `follow`; a catch-up then leaves the target
    /// identical, each audit row once.
    fn caught_up_identical(mut self) {
        self.stop_writer();
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let (source, target) = (&self.source, &self.target);
        assert_ok(&catch_up(source, target, "main"));
        assert_eq!(source.fingerprints("app"), target.fingerprints("app"), "seed {}", self.seed);
        let audit = "SELECT count(*) || '/' || count(DISTINCT seq) FROM audit";
        assert_eq!(source.psql("app", audit), target.psql("app", audit));
    }
}

/// A target whose server commits asynchronously (`synchronous_commit = off`, as
/// every test cluster here, its WAL writer waking every 10 s) crashes while
/// change capture applies a stream of small transactions: what the source was
/// told the target holds must survive the crash, since the source does not
/// send it again. Apply commits with at least a local flush whatever the
/// target's default.
#[test]
fn a_target_committing_asynchronously_that_crashes_loses_nothing_the_source_released() {
    let mut run = Following::start(Cluster::builder(PgVersion::V15).setting("wal_writer_delay", "'10s'").start());
    thread::sleep(Duration::from_millis(1000));
    // The last transactions' commits sit in the target's last, partly filled
    // WAL page, which its WAL writer writes only when it wakes.
    run.stop_writer();
    let end = run.source.psql("app", "SELECT pg_current_wal_lsn()");
    let released = format!("SELECT bool_and(confirmed_flush_lsn >= '{end}') FROM pg_replication_slots");
    assert!(wait_for(|| run.source.psql("app", &released) == "t"), "the source was not told everything was applied");
    run.target.crash();
    run.target.resume();
    run.caught_up_identical();
}

#[test]
fn source_and_target_restarts_during_streaming_are_survived() {
    let mut run = Following::start(Cluster::start(PgVersion::V15));
    let (source, target) = (&run.source, &run.target);
    target.restart();
    let after_target = source.psql("app", "SELECT pg_current_wal_lsn()");
    assert!(
        wait_for(|| target.psql(
            "app",
            &format!("SELECT coalesce(max(applied_lsn) >= '{after_target}', false) FROM pgferry.apply_progress")
        ) == "t"),
        "apply did not continue after the target's restart"
    );
    source.restart();
    thread::sleep(Duration::from_millis(500));
    let after_source = source.psql("app", "SELECT pg_current_wal_lsn()");
    assert!(
        wait_for(|| target.psql(
            "app",
            &format!("SELECT coalesce(max(applied_lsn) >= '{after_source}', false) FROM pgferry.apply_progress")
        ) == "t"),
        "apply did not continue after the source's restart"
    );
    assert!(run.child.try_wait().unwrap().is_none(), "follow exited");
    run.caught_up_identical();
}

#[test]
fn change_capture_before_the_copy_is_refused_with_nothing_changed() {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V15);
    for c in [&source, &target] {
        c.create_database("app");
    }
    source.psql("app", "CREATE TABLE t (id int PRIMARY KEY)");
    let out = pgferry(&["follow", "--source", &source.url("app"), "--target", &target.url("app")], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("has not been copied") && stderr.contains("hint: run pgferry copy"), "{stderr}");
    assert_eq!(source.psql("app", "SELECT count(*) FROM pg_replication_slots"), "0");
    assert_eq!(target.psql("app", "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgferry'"), "0");
}

/// The runner lock lives in one session on the target. Once that session is
/// terminated, a second `follow` could take the lock and the slot and apply
/// beside the first (seen: two of them trading the slot). The first takes the
/// lock again and goes on; when another process holds it by then, it stops
/// (exit 3, saying why); a rerun resumes, and nothing is lost or doubled.
#[test]
fn a_follow_whose_runner_lock_session_ends_takes_it_again_or_stops() {
    let source = Cluster::start(PgVersion::V15);
    source.create_database("app");
    source.psql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT g, 0 FROM generate_series(1, 100) g",
    );
    let target = Cluster::start(PgVersion::V15);
    target.create_database("app");
    copy(&source, &target, "main");
    let (s, t) = (source.url("app"), target.url("app"));
    let mut follow = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(follow_args(&s, &t, "main"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgferry follow");
    let end_lock_session = "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
        WHERE query LIKE '%pg_try_advisory_lock%' AND pid <> pg_backend_pid()";
    source.psql("app", "UPDATE t SET v = 1 WHERE id <= 50");
    assert!(wait_for(|| target.psql("app", "SELECT count(*) FROM t WHERE v = 1") == "50"), "applied");
    assert_eq!(target.psql("app", end_lock_session), "t");
    let held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
        AND classid::int = hashtext('pgferry') AND objid::int = hashtext('main')";
    assert!(wait_for(|| target.psql("app", held) == "1"), "the lock taken again");
    source.psql("app", "UPDATE t SET v = 2 WHERE id <= 50");
    assert!(wait_for(|| target.psql("app", "SELECT count(*) FROM t WHERE v = 2") == "50"), "applying on");
    assert!(follow.try_wait().unwrap().is_none(), "still following");

    // Another process is queued for the lock when the session ends: the server
    // grants it the lock at once, before follow can take it again. (It never
    // waits longer than lock_timeout, so a failure cannot hang the test.)
    let other_takes =
        "SET lock_timeout = '60s'; SELECT pg_advisory_lock(hashtext('pgferry'), hashtext('main')); SELECT pg_sleep(3)";
    let waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
        AND classid::int = hashtext('pgferry') AND objid::int = hashtext('main')";
    let out = thread::scope(|scope| {
        let other = scope.spawn(|| target.try_psql("app", other_takes));
        assert!(wait_for(|| target.psql("app", waiting) == "1"), "the other process waits for the lock");
        assert_eq!(target.psql("app", end_lock_session), "t");
        assert!(wait_for(|| follow.try_wait().unwrap().is_some()), "follow stops once another holds the lock");
        other.join().unwrap().expect("the other process had the lock");
        follow.wait_with_output().unwrap()
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("runner lock") && stderr.contains("another pgferry process"), "{stderr}");
    source.psql("app", "UPDATE t SET v = v + 1; INSERT INTO t VALUES (101, 7)");
    assert_ok(&catch_up(&source, &target, "main"));
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"));
}

/// An episode of connection failures ends once a new session hears from the
/// source: a walsender ended, then another one more than two minutes (the
/// retry limit) later, is each a new episode, retried (was: the first episode
/// never ended, so the second failure stopped follow with exit 3).
#[test]
fn a_connection_lost_long_after_an_earlier_one_is_retried() {
    let source = Cluster::start(PgVersion::V15);
    source.create_database("app");
    source.psql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT g, 0 FROM generate_series(1, 10) g",
    );
    let target = Cluster::start(PgVersion::V15);
    target.create_database("app");
    copy(&source, &target, "main");
    let mut follow = spawn_follow(&source, &target, "main", &[]);
    let end_walsender = "SELECT count(pg_terminate_backend(active_pid)) FROM pg_replication_slots WHERE active";
    for round in 1..=2 {
        assert!(wait_for(|| source.psql("app", end_walsender) == "1"), "a walsender to end");
        source.psql("app", &format!("UPDATE t SET v = {round}"));
        let applied = format!("SELECT count(*) FROM t WHERE v = {round}");
        assert!(wait_for(|| target.psql("app", &applied) == "10"), "round {round} applied");
        if round == 1 {
            thread::sleep(Duration::from_secs(125));
        }
    }
    assert!(follow.try_wait().unwrap().is_none(), "follow still runs");
    follow.kill().unwrap();
    follow.wait().unwrap();
}

/// Rows of the lanes' journal ahead of lane 0's position (`pgferry.apply_progress`).
const LANES_AHEAD: &str =
    "SELECT count(*) FROM pgferry.apply_lane a LEFT JOIN pgferry.apply_progress p USING (migration)
    WHERE a.applied_lsn > coalesce(p.applied_lsn, '0/0')";

#[test]
fn parallel_apply_killed_again_and_again_under_four_writers_15_to_15() {
    parallel_apply_killed_again_and_again(PgVersion::V15);
}

#[test]
fn parallel_apply_killed_again_and_again_under_four_writers_15_to_18() {
    parallel_apply_killed_again_and_again(PgVersion::V18);
}

/// Four writers (key changes, TRUNCATE, unique swaps, keyless inserts among
/// their changes) while `follow --apply-lanes 4` is killed at random moments
/// and at the lanes' commits (some lanes committed, others not), then caught
/// up: the target is the source, row for row, nothing lost or doubled.
fn parallel_apply_killed_again_and_again(to: PgVersion) {
    let source = Cluster::start(PgVersion::V15);
    load(&source);
    let target = Cluster::start(to);
    target.create_database("app");
    copy(&source, &target, "main");
    let seed = seed();
    let mut rng = Rng(seed ^ 0x2545_f491_4f6c_dd1d | 1);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4).map(|w| spawn_writer(source.url("app"), w, 4, seed, stop.clone())).collect();
    let mut ahead_seen = 0;
    for round in 0..10 {
        let failpoint = match round % 4 {
            0 => Some(format!("apply-after-commit:{}", 1 + rng.below(8))),
            1 => Some(format!("apply-lane-after-commit:{}", 1 + rng.below(8))),
            2 => Some(format!("apply-before-commit:{}", 1 + rng.below(8))),
            _ => None,
        };
        let envs: Vec<(&str, &str)> = failpoint.iter().map(|f| ("PGFERRY_FAILPOINT", f.as_str())).collect();
        let mut child = spawn_follow_with(&source, &target, "main", &envs, &["--apply-lanes", "4"]);
        let deadline =
            Instant::now() + Duration::from_millis(if failpoint.is_some() { 15_000 } else { 300 + rng.below(1500) });
        while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        assert!(!status.success(), "round {round} ({failpoint:?}): follow ended on its own: {status:?}");
        ahead_seen += target.try_psql("app", LANES_AHEAD).ok().and_then(|n| n.parse::<u32>().ok()).unwrap_or(0);
    }
    stop.store(true, Ordering::SeqCst);
    let committed: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(committed > 100, "the writers committed only {committed} transactions");
    assert_ok(&catch_up_with(&source, &target, "main", &["--apply-lanes", "4"]));
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"), "seed {seed}");
    let audit = "SELECT count(*) || '/' || count(DISTINCT seq) FROM audit";
    assert_eq!(source.psql("app", audit), target.psql("app", audit), "seed {seed}");
    assert_eq!(target.psql("app", LANES_AHEAD), "0", "the lanes agree once caught up");
    eprintln!("seed {seed}: {committed} transactions; {ahead_seen} lane rows found ahead of lane 0 after the kills");
}

/// A backlog of transactions each touching rows of one key-only table
/// (inserts, updates, deletes), then the barriers: key changes, TRUNCATE,
/// unique swaps, a keyless table, REPLICA IDENTITY FULL, partitions.
/// Keys from `base` on; `swap` (a second unique constraint: applied on lane 0)
/// gets a row in each transaction.
fn backlog(source: &Cluster, base: i64) {
    let mut sql = String::new();
    for i in 0..400 {
        sql.push_str(&format!(
            "BEGIN; INSERT INTO kv (id, n) VALUES ({}, {i}); UPDATE kv SET n = n + {i} WHERE id = {};
             DELETE FROM kv WHERE id = {}; INSERT INTO swap VALUES ({0}, {0}, {i}); COMMIT;",
            base + i,
            1 + i % 200,
            base + 100_000 + i - 1
        ));
        if i % 2 == 0 {
            sql.push_str(&format!("INSERT INTO kv (id, n) VALUES ({}, 0);", base + 100_000 + i));
        }
    }
    source.psql("app", &sql);
}

#[test]
fn parallel_apply_uses_its_lanes_and_applies_barriers_in_order() {
    let source = Cluster::start(PgVersion::V15);
    load(&source);
    let target = Cluster::start(PgVersion::V15);
    target.create_database("app");
    copy(&source, &target, "main");
    backlog(&source, 1_000_000);
    source.psql("app", CHANGES);
    source.psql("app", &hot_changes());
    backlog(&source, 2_000_000);
    let out = catch_up_with(&source, &target, "main", &["--apply-lanes", "4"]);
    assert_ok(&out);
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"));
    assert_eq!(source.psql("app", "SELECT count(*) FROM audit"), target.psql("app", "SELECT count(*) FROM audit"));
    // Lanes 1 to 3 each committed their own part of the batches, at positions
    // lane 0 (pgferry.apply_progress, committed last) has reached.
    assert_eq!(
        target.psql("app", "SELECT string_agg(lane::text || '/' || lanes, ',' ORDER BY lane) FROM pgferry.apply_lane"),
        "1/4,2/4,3/4"
    );
    assert_eq!(target.psql("app", LANES_AHEAD), "0");
    let applied = target.psql("app", "SELECT applied_lsn FROM pgferry.apply_progress");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&applied), "the run reports the journaled position {applied}: {stdout}");
}

#[test]
fn a_kill_between_the_lanes_commits_is_resolved_by_any_next_run() {
    let source = Cluster::start(PgVersion::V15);
    load(&source);
    let target = Cluster::start(PgVersion::V18);
    target.create_database("app");
    copy(&source, &target, "main");
    backlog(&source, 1_000_000);
    // The first commit of a lane other than lane 0, which commits after them:
    // this kill leaves a lane past the applied position.
    let (s, t) = (source.url("app"), target.url("app"));
    let mut args = follow_args(&s, &t, "main");
    args.extend(["--until-caught-up", "--apply-lanes", "4"]);
    let out = pgferry(&args, &[("PGFERRY_FAILPOINT", "apply-lane-after-commit:1")]);
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    assert_ne!(target.psql("app", LANES_AHEAD), "0", "a lane committed ahead of lane 0");
    // `swap`'s second unique constraint dropped on the target meanwhile: its
    // changes now split by key, yet the killed run applied them on lane 0,
    // which committed none of them; none may be skipped.
    target.psql("app", "ALTER TABLE swap DROP CONSTRAINT swap_code_key");
    // A rerun asking for one lane keeps the killed run's four until they agree;
    // an insert or delete applied twice would stop it, one lost would show.
    backlog_more(&source);
    assert_ok(&catch_up(&source, &target, "main"));
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"));
    assert_eq!(target.psql("app", LANES_AHEAD), "0");
    backlog_more(&source);
    assert_ok(&catch_up(&source, &target, "main"));
    assert_eq!(source.fingerprints("app"), target.fingerprints("app"));
}

/// More changes after [`backlog`], on the same rows.
fn backlog_more(source: &Cluster) {
    source.psql("app", "UPDATE kv SET n = n * 2 WHERE id % 3 = 0; DELETE FROM kv WHERE id % 7 = 0 AND id > 1000000");
}

//! Observability against real clusters: `follow --metrics-listen` serves
//! Prometheus text whose lag and applied counts move while the source takes
//! writes (and which parses as the exposition format), the journal samples the
//! lag at least every 10 s, and `pgferry report` draws a migration (copy, change
//! capture under writes, validation, cutover) as one self-contained HTML page
//! whose downtime is the cutover's own figure; `status --watch` redraws.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use pgferry_testkit::{Cluster, PgVersion, Writer};

fn pgferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(args).output().expect("run pgferry")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "pgferry failed ({:?}):\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pair() -> (Cluster, Cluster) {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V15);
    source.create_database("app");
    target.create_database("app");
    source.psql(
        "app",
        "CREATE TABLE orders (id bigserial PRIMARY KEY, note text, n int NOT NULL DEFAULT 0);
         INSERT INTO orders (note) SELECT 'before copy ' || g FROM generate_series(1, 2000) g;",
    );
    (source, target)
}

/// Inserts and updates, paced so the machine's other tests keep their cores.
fn writes(source: &Cluster) -> Writer {
    Writer::start(source.url("app"), |n| {
        format!(
            "INSERT INTO orders (note) SELECT 'round {n}' FROM generate_series(1, 5);
             UPDATE orders SET n = n + 1 WHERE id = {};
             SELECT pg_sleep(0.005);",
            n % 2000 + 1
        )
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn_follow(source: &Cluster, target: &Cluster, extra: &[&str]) -> Child {
    let (s, t) = (source.url("app"), target.url("app"));
    Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["follow", "--source", &s, "--target", &t])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pgferry follow")
}

/// GET /metrics (HTTP/1.0: one response, no chunked encoding); `None` while
/// nothing listens yet.
fn scrape(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.") && head.contains(" 200 "), "{head}");
    Some(body.to_string())
}

/// A sample's name and labels, as one key.
type Series = (String, BTreeMap<String, String>);

/// Parses Prometheus' text exposition format (version 0.0.4), panicking at the
/// first line that breaks it: `# HELP` and `# TYPE` lines, then samples
/// `name{label="value",...} value [timestamp]` of a declared family (a
/// histogram's `_bucket`, `_sum` and `_count` included).
fn parse_exposition(text: &str) -> HashMap<Series, f64> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.trim_start().splitn(3, ' ').collect();
            match words.as_slice() {
                ["TYPE", name, kind] => {
                    assert!(valid_name(name), "bad metric name in {line:?}");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(kind),
                        "bad type in {line:?}"
                    );
                    assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "TYPE twice: {line:?}");
                }
                ["HELP", name, ..] => assert!(valid_name(name), "bad metric name in {line:?}"),
                _ => {}
            }
            continue;
        }
        let (series, rest) = match line.find('{') {
            Some(open) => {
                let close = line.rfind('}').unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
                let labels = parse_labels(&line[open + 1..close], line);
                ((line[..open].to_string(), labels), &line[close + 1..])
            }
            None => {
                let (name, _) = line.split_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
                ((name.to_string(), BTreeMap::new()), &line[name.len()..])
            }
        };
        assert!(valid_name(&series.0), "bad metric name in {line:?}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| series.0.strip_suffix(s).filter(|f| types.get(*f).is_some_and(|t| t == "histogram")))
            .unwrap_or(&series.0);
        assert!(types.contains_key(family), "sample before its TYPE: {line:?}");
        let mut fields = rest.split_whitespace();
        let value = fields.next().unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        if let Some(timestamp) = fields.next() {
            timestamp.parse::<i64>().unwrap_or_else(|_| panic!("bad timestamp in {line:?}"));
        }
        assert!(fields.next().is_none(), "trailing text: {line:?}");
        assert!(samples.insert(series, value).is_none(), "sample twice: {line:?}");
    }
    samples
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_labels(text: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad label in {line:?}"));
        assert!(valid_name(name) && !name.contains(':'), "bad label name in {line:?}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => panic!("bad escape in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        labels.insert(name.to_string(), value);
        rest = after[end + 1..].trim_start_matches(',').trim();
    }
    labels
}

fn value(samples: &HashMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    samples.get(&(name.to_string(), labels)).copied()
}

/// `status --watch` prints the status again every few seconds until a signal,
/// which ends it with exit 0.
fn watch_redraws(s: &str, t: &str) {
    let watch = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(["status", "--source", s, "--target", t, "--watch", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgferry status --watch");
    thread::sleep(Duration::from_secs(8));
    let killed = Command::new("kill").args(["-TERM", &watch.id().to_string()]).status().expect("run kill");
    assert!(killed.success());
    let out = watch.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let rounds: Vec<serde_json::Value> =
        serde_json::Deserializer::from_slice(&out.stdout).into_iter().collect::<Result<_, _>>().unwrap();
    assert!(rounds.len() >= 2, "{} round(s) in 8 s", rounds.len());
    assert!(rounds.iter().all(|r| r["phase"] == "copied"), "{rounds:?}");
}

#[test]
fn the_exposition_parser_refuses_what_prometheus_refuses() {
    let good = "# HELP a_total things\n# TYPE a_total counter\na_total{table=\"public.\\\"x\\\"\",kind=\"insert\"} 3\n";
    let parsed = parse_exposition(good);
    assert_eq!(value(&parsed, "a_total", &[("table", "public.\"x\""), ("kind", "insert")]), Some(3.0));
    for bad in ["a_total 1\n", "# TYPE a_total counter\na_total{kind=\"x} 1\n", "# TYPE 1a gauge\n1a 2\n"] {
        assert!(std::panic::catch_unwind(|| parse_exposition(bad)).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn metrics_move_while_change_capture_runs_under_writes() {
    let (source, target) = pair();
    let (s, t) = (source.url("app"), target.url("app"));
    ok(pgferry(&["copy", "--source", &s, "--target", &t]));
    let writer = writes(&source);
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let mut follow = spawn_follow(&source, &target, &["--metrics-listen", &address]);

    let mut scrapes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while scrapes.len() < 8 && Instant::now() < deadline {
        thread::sleep(Duration::from_secs(4));
        if let Some(body) = scrape(port) {
            scrapes.push(parse_exposition(&body));
        }
    }
    let rounds = writer.stop();
    // Quiet now: the source sends a keepalive only every 30 s, the samples go on.
    thread::sleep(Duration::from_secs(14));
    follow.kill().unwrap();
    follow.wait().unwrap();
    assert!(scrapes.len() >= 6, "only {} scrapes answered", scrapes.len());

    let (first, last) = (&scrapes[1], scrapes.last().unwrap());
    assert_eq!(value(last, "pgferry_phase", &[("phase", "follow")]), Some(1.0));
    assert_eq!(value(last, "pgferry_phase", &[("phase", "copy")]), Some(0.0));
    let transactions = |s: &HashMap<Series, f64>| value(s, "pgferry_transactions_applied_total", &[]).unwrap_or(0.0);
    let inserts = |s: &HashMap<Series, f64>| {
        value(s, "pgferry_changes_applied_total", &[("table", "public.orders"), ("kind", "insert")]).unwrap_or(0.0)
    };
    let updates = |s: &HashMap<Series, f64>| {
        value(s, "pgferry_changes_applied_total", &[("table", "public.orders"), ("kind", "update")]).unwrap_or(0.0)
    };
    assert!(transactions(last) > transactions(first), "{} then {}", transactions(first), transactions(last));
    let applied: Vec<_> = last.iter().filter(|((name, _), _)| name == "pgferry_changes_applied_total").collect();
    assert!(inserts(last) > inserts(first), "{applied:?}");
    assert!(updates(last) > updates(first), "{applied:?}");
    assert!(transactions(last) <= rounds as f64, "more transactions applied than the writer committed");
    assert!(value(last, "pgferry_apply_batch_seconds_count", &[]).is_some_and(|n| n > 0.0));
    assert!(value(last, "pgferry_apply_batch_seconds_bucket", &[("le", "+Inf")]).is_some_and(|n| n > 0.0));
    assert!(value(last, "pgferry_slot_retained_bytes", &[]).is_some_and(|b| b > 0.0));
    let lags: Vec<f64> = scrapes.iter().filter_map(|s| value(s, "pgferry_replication_lag_bytes", &[])).collect();
    assert_eq!(lags.len(), scrapes.len(), "every scrape has the lag");
    let distinct: std::collections::BTreeSet<u64> = lags.iter().map(|l| *l as u64).collect();
    assert!(distinct.len() > 1, "the lag never moved: {lags:?}");
    assert!(scrapes.iter().all(|s| value(s, "pgferry_replication_lag_seconds", &[]).is_some()));

    // The journal sampled the lag every status interval, never 10 s apart,
    // under writes and while the source was quiet.
    let gaps = target.psql(
        "app",
        "SELECT count(*) || ' ' || coalesce(max(gap), 0) FROM (
             SELECT extract(epoch FROM sampled_at - lag(sampled_at) OVER (ORDER BY sampled_at)) AS gap
             FROM pgferry.follow_sample WHERE migration = 'main') g",
    );
    let (count, widest) = gaps.trim().split_once(' ').unwrap();
    assert!(count.parse::<u32>().unwrap() >= 7, "{gaps}");
    assert!(widest.parse::<f64>().unwrap() <= 10.0, "{gaps}");
}

#[test]
fn a_taken_metrics_address_fails_the_command_before_it_starts() {
    let (source, target) = pair();
    let (s, t) = (source.url("app"), target.url("app"));
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let out = pgferry(&["copy", "--source", &s, "--target", &t, "--metrics-listen", &address]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--metrics-listen"));
    assert_eq!(target.psql("app", "SELECT to_regclass('pgferry.migration') IS NULL"), "t", "nothing was copied");
}

#[test]
fn the_report_draws_the_migration_with_the_cutovers_downtime() {
    let (source, target) = pair();
    let (s, t) = (source.url("app"), target.url("app"));
    ok(pgferry(&["copy", "--source", &s, "--target", &t]));
    let writer = writes(&source);
    let mut follow = spawn_follow(&source, &target, &[]);
    thread::sleep(Duration::from_secs(16));
    writer.stop();
    follow.kill().unwrap();
    follow.wait().unwrap();
    ok(pgferry(&["follow", "--source", &s, "--target", &t, "--until-caught-up"]));
    ok(pgferry(&["validate", "--source", &s, "--target", &t]));
    watch_redraws(&s, &t);
    let cutover =
        ok(pgferry(&["cutover", "--source", &s, "--target", &t, "--switch-command", "true", "--format", "json"]));
    let cutover: serde_json::Value = serde_json::from_str(&cutover).unwrap();
    let downtime = cutover["downtime_seconds"].as_f64().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.html");
    ok(pgferry(&["report", "--target", &t, "--output", file.to_str().unwrap()]));
    let html = std::fs::read_to_string(&file).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert!(html.matches("<svg").count() >= 7, "the timeline, copy, lag, throughput, slot and cutover plots");
    assert!(html.matches("<polyline").count() + html.matches("<path").count() >= 4, "lines drawn");
    assert!(html.contains(&format!("<span id=\"downtime\">{downtime:.3}</span>")), "downtime {downtime}");
    for outside in ["http://", "https://", "<script", "<link", "<img", "url("] {
        assert!(!html.contains(outside), "the page reaches outside: {outside}");
    }
    for shown in ["public.orders", "EQUAL", "switched"] {
        assert!(html.contains(shown), "{shown} missing from {html}");
    }

    let json: serde_json::Value =
        serde_json::from_str(&ok(pgferry(&["report", "--target", &t, "--format", "json"]))).unwrap();
    assert_eq!(json["cutover"]["downtime_seconds"].as_f64(), Some(downtime));
    let names = |key: &str| -> Vec<String> {
        json[key].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names("phases"), ["created", "schema", "data", "post_data", "copied"]);
    let steps = names("cutover_steps");
    assert_eq!(steps.first().map(String::as_str), Some("decided"), "{steps:?}");
    assert!(steps.iter().any(|s| s == "switched"), "{steps:?}");
    assert!(json["samples"].as_array().unwrap().len() >= 2);
    assert_eq!(json["validations"][0]["verdict"], "EQUAL");
    assert!(json["preflight"].is_array(), "the preflight's findings were recorded");
    assert_eq!(json["tables"][0]["rows"], 2000);
}

//! `pgferry inventory`: the JSON form is pinned on a small fixed database (with the
//! data-dependent figures blanked), and the schema filters select schemas.

use std::process::{Command, Output};

use pgferry_core::inventory::Inventory;
use pgferry_testkit::{Cluster, PgVersion};

const FIXTURE: &str = r#"
    CREATE SCHEMA shop; CREATE SCHEMA "Audit Log";
    CREATE TABLE shop.customer (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text UNIQUE);
    CREATE TABLE shop.orders (id bigserial, customer_id int NOT NULL, placed date NOT NULL,
        total numeric, total_cents bigint GENERATED ALWAYS AS ((total * 100)::bigint) STORED,
        PRIMARY KEY (id, placed),
        CONSTRAINT orders_customer FOREIGN KEY (customer_id) REFERENCES shop.customer(id) ON DELETE RESTRICT)
        PARTITION BY RANGE (placed);
    CREATE TABLE shop.orders_2025 PARTITION OF shop.orders FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    CREATE TABLE shop.room (id int PRIMARY KEY, area circle, EXCLUDE USING gist (area WITH &&));
    CREATE UNLOGGED TABLE shop.scratch (note text);
    ALTER TABLE shop.scratch REPLICA IDENTITY FULL;
    CREATE TABLE "Audit Log".entry (at timestamptz DEFAULT now(), what text);
    CREATE TABLE "Audit Log".entry_2025 (CHECK (at >= '2025-01-01')) INHERITS ("Audit Log".entry);
    CREATE SEQUENCE "Audit Log".ticket INCREMENT BY -1 MINVALUE -99 MAXVALUE 0 START 0 CYCLE;
    CREATE FUNCTION shop.stamp() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
    CREATE TRIGGER stamp BEFORE INSERT ON shop.orders FOR EACH ROW EXECUTE FUNCTION shop.stamp();
    ALTER TABLE shop.orders ENABLE ALWAYS TRIGGER stamp;
    CREATE VIEW shop.big_orders AS SELECT id, total FROM shop.orders WHERE total > 100;
    CREATE MATERIALIZED VIEW shop.totals AS SELECT customer_id, sum(total) AS total FROM shop.orders GROUP BY 1 WITH NO DATA;
    INSERT INTO shop.customer (email) VALUES ('a@example.com');
    ALTER TABLE shop.customer ADD CONSTRAINT email_has_at CHECK (email LIKE '%@%') NOT VALID;
"#;

fn inventory(cluster: &Cluster, extra: &[&str]) -> Output {
    let url = cluster.url("shop");
    let mut args = vec!["inventory", "--db", &url, "--format", "json"];
    args.extend(extra);
    Command::new(env!("CARGO_BIN_EXE_pgferry")).args(&args).output().expect("run pgferry")
}

fn parse(out: &Output) -> Inventory {
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_json_form_is_stable() {
    let cluster = Cluster::start(PgVersion::V15);
    cluster.create_database("shop");
    cluster.psql("shop", FIXTURE);
    let mut got = parse(&inventory(&cluster, &[])).catalog_only();
    got.server_version_num = 0;
    let got = serde_json::to_string_pretty(&got).unwrap() + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/inventory.json");
    if std::env::var_os("PGFERRY_BLESS").is_some() {
        std::fs::write(path, &got).unwrap();
    }
    let expected = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        got, expected,
        "the inventory JSON changed: if on purpose, rerun with PGFERRY_BLESS=1 and update docs/inventory.md"
    );
}

#[test]
fn schema_filters_include_and_exclude() {
    let cluster = Cluster::start(PgVersion::V15);
    cluster.create_database("shop");
    cluster.psql("shop", FIXTURE);
    let only = parse(&inventory(&cluster, &["--schema", "Audit Log"]));
    assert_eq!(only.schemas.iter().map(|s| s.as_str()).collect::<Vec<_>>(), ["Audit Log"]);
    assert!(only.tables.iter().all(|t| t.name.schema.as_str() == "Audit Log"));
    assert_eq!(only.sequences.len(), 1);
    let without = parse(&inventory(&cluster, &["--exclude-schema", "shop", "--exclude-schema", "public"]));
    assert_eq!(without.schemas.iter().map(|s| s.as_str()).collect::<Vec<_>>(), ["Audit Log"]);
    assert!(without.foreign_keys.is_empty() && without.views.is_empty());
}

//! The demo's sample database: a small shop with what makes real migrations hard.
//!
//! Three schemas; foreign keys; a trigger that writes an audit row for each order
//! (on the target it must not fire again for replicated rows); sequences of three
//! kinds (`serial`, `bigserial`, an identity column) that the cutover must carry
//! over; a partitioned table; and long order notes stored out of line in the TOAST
//! table (`STORAGE EXTERNAL`: uncompressed, so they really are TOASTed). The
//! application role `shop_app` exists on both sides, so that the copy restores its
//! grants and the fence has a role to fence.
//!
//! The size scales with `--size-mb`: the row counts below give about one megabyte of
//! database per unit (measured with `pg_database_size` on PostgreSQL 15).

use pgferry::{Error, Result};
use pgferry_core::sql::{Ident, Sql};
use pgferry_pg::Secret;
use tokio_postgres::Client;

/// The database the demo migrates.
pub(crate) const DATABASE: &str = "shopdb";
/// The application's role (also named in [`GRANTS`]).
pub(crate) const APP_ROLE: &str = "shop_app";

const CUSTOMERS_PER_MB: i64 = 180;
const ORDERS_PER_MB: i64 = 2_200;

const SCHEMA: &str = "
CREATE SCHEMA catalog;
CREATE SCHEMA shop;
CREATE SCHEMA audit;
CREATE TABLE catalog.products (id serial PRIMARY KEY, name text NOT NULL, price numeric(10,2) NOT NULL);
CREATE TABLE shop.customers (id bigserial PRIMARY KEY, name text NOT NULL, since timestamptz NOT NULL DEFAULT now());
CREATE TABLE shop.orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES shop.customers,
    product_id int NOT NULL REFERENCES catalog.products,
    total numeric(12,2),
    note text,
    at timestamptz NOT NULL DEFAULT now());
ALTER TABLE shop.orders ALTER COLUMN note SET STORAGE EXTERNAL;
CREATE INDEX ON shop.orders (customer_id);
CREATE TABLE audit.events (id bigserial, at timestamptz NOT NULL DEFAULT now(), detail jsonb, PRIMARY KEY (id, at))
    PARTITION BY RANGE (at);
CREATE TABLE audit.events_old PARTITION OF audit.events FOR VALUES FROM (MINVALUE) TO ('2026-01-01');
CREATE TABLE audit.events_new PARTITION OF audit.events FOR VALUES FROM ('2026-01-01') TO (MAXVALUE);
CREATE FUNCTION audit.log_order() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO audit.events (at, detail) VALUES (NEW.at, jsonb_build_object('order', NEW.id, 'total', NEW.total)); RETURN NEW; END$$;
CREATE TRIGGER orders_audit AFTER INSERT ON shop.orders FOR EACH ROW EXECUTE FUNCTION audit.log_order();
INSERT INTO catalog.products (name, price) SELECT 'product ' || g, g % 500 + 0.99 FROM generate_series(1, 1000) g;";

const CUSTOMERS: &str =
    "INSERT INTO shop.customers (name) SELECT 'customer ' || g FROM generate_series(1, $1::bigint) g";

/// Orders spread over two years (both partitions), one in fifty with a 6 kB note.
const ORDERS: &str = "
INSERT INTO shop.orders (customer_id, product_id, total, note, at)
SELECT 1 + g % $2::bigint, 1 + g % 1000, (g % 1000) * 1.25,
       CASE WHEN g % 50 = 0 THEN repeat(md5(g::text), 200) ELSE 'order ' || g END,
       now() - (g % 700) * interval '1 day'
FROM generate_series(1, $1::bigint) g";

const GRANTS: &str = "
GRANT USAGE ON SCHEMA catalog, shop, audit TO shop_app;
GRANT SELECT ON ALL TABLES IN SCHEMA catalog TO shop_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA shop, audit TO shop_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA shop, audit TO shop_app;";

/// The sample's size as the server counts it.
const SIZE: &str = "SELECT pg_database_size(current_database())";

/// Creates the demo's database and application role on a fresh cluster (through
/// the superuser's socket connection to `postgres`), and sets the superuser's password.
/// `app` is the application role's password, or the source's hash of it (stored as it is).
pub(crate) async fn prepare_cluster(postgres: &Client, superuser: &Secret, app: &Secret) -> Result<()> {
    let name = |n: &str| Ident::new(n).expect("a valid name");
    let statements = [
        Sql::new("ALTER ROLE postgres PASSWORD ").literal(superuser.expose()),
        Sql::new("CREATE ROLE ").ident(&name(APP_ROLE)).push(" LOGIN PASSWORD ").literal(app.expose()),
        Sql::new("CREATE DATABASE ").ident(&name(DATABASE)),
    ];
    for sql in statements {
        postgres.batch_execute(sql.as_str()).await.map_err(|e| Error::server("preparing a demo cluster", e))?;
    }
    Ok(())
}

/// The application role's password hash (`pg_authid`), to give the target the
/// same password; kept as a secret, never shown.
pub(crate) async fn password_hash(postgres: &Client) -> Result<Secret> {
    let row = postgres
        .query_one("SELECT rolpassword FROM pg_authid WHERE rolname = $1", &[&APP_ROLE])
        .await
        .map_err(|e| Error::server("reading the demo's application role", e))?;
    Ok(Secret::new(row.get::<_, String>(0)))
}

/// What was loaded.
pub(crate) struct Loaded {
    pub(crate) customers: i64,
    pub(crate) bytes: i64,
}

/// Loads the sample into the source's `shopdb`; returns the customers' count (the
/// workload picks among them) and the database's size.
pub(crate) async fn load(shopdb: &Client, size_mb: u32) -> Result<Loaded> {
    let customers = CUSTOMERS_PER_MB * i64::from(size_mb);
    let orders = ORDERS_PER_MB * i64::from(size_mb);
    let fail = |doing: &'static str| move |e| Error::server(doing, e);
    shopdb.batch_execute(SCHEMA).await.map_err(fail("creating the sample's schema"))?;
    shopdb.execute(CUSTOMERS, &[&customers]).await.map_err(fail("loading customers"))?;
    shopdb.execute(ORDERS, &[&orders, &customers]).await.map_err(fail("loading orders"))?;
    shopdb.batch_execute(GRANTS).await.map_err(fail("granting the application's privileges"))?;
    shopdb.batch_execute("VACUUM ANALYZE").await.map_err(fail("analyzing the sample"))?;
    let bytes: i64 = shopdb.query_one(SIZE, &[]).await.map_err(fail("measuring the sample"))?.get(0);
    Ok(Loaded { customers, bytes })
}

//! The copy's foreign keys, after the rest of post-data: added `NOT VALID`, then
//! validated `--index-jobs` at a time without blocking writes
//! ([`pgferry_core::foreign_keys`] says why and plans it; this module reads both
//! catalogs and runs the plan). `pg_restore` is given the post-data list without
//! them.

use pgferry_core::foreign_keys::{plan, TargetKeys};
use pgferry_core::inventory::{ForeignKey, SchemaFilter};
use pgferry_core::sql::{Ident, QualifiedName, Sql};
use pgferry_pg::ConnSpec;
use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::{failpoint, pool};

/// The source's foreign keys (user schemas, not the clones on partitions).
pub(crate) async fn of_source(source: &ConnSpec) -> Result<Vec<ForeignKey>> {
    let mut client = pgferry_pg::connect(source).await?;
    let inventory = pgferry_pg::inventory::read_inventory(&mut client, &SchemaFilter::default())
        .await
        .map_err(|e| Error::server("reading the source's foreign keys", e))?;
    Ok(inventory.foreign_keys)
}

/// Before a rerun restores post-data again: the foreign keys an earlier run
/// added are dropped (by the source's names), so nothing they depend on is in
/// the way, and added again after.
pub(crate) async fn drop_added(dst: &Client, keys: &[ForeignKey]) -> Result<()> {
    for fk in keys {
        let sql = Sql::new("ALTER TABLE ").name(&fk.table).push(" DROP CONSTRAINT IF EXISTS ").ident(&fk.name);
        dst.batch_execute(sql.as_str())
            .await
            .map_err(|e| Error::server(&format!("dropping foreign key {} on {}", fk.name, fk.table), e))?;
    }
    Ok(())
}

/// Adds the source's foreign keys the target lacks, then validates them.
pub(crate) async fn add_and_validate(target: &ConnSpec, dst: &Client, keys: &[ForeignKey], jobs: usize) -> Result<()> {
    let plan = plan(keys, &target_keys(dst).await?);
    for sql in &plan.add {
        dst.batch_execute(sql.as_str())
            .await
            .map_err(|e| Error::server(&format!("adding a foreign key ({})", sql.as_str()), e))?;
    }
    failpoint::hit("copy-after-foreign-keys-added");
    let open = async || Ok(pgferry_pg::connect(target).await?);
    let validate = async |client: &Client, sql: Sql| {
        client
            .batch_execute(sql.as_str())
            .await
            .map_err(|e| Error::server(&format!("validating a foreign key ({})", sql.as_str()), e))
    };
    pool::each(plan.validate, jobs, open, validate).await.map(|_| ())
}

async fn target_keys(dst: &Client) -> Result<TargetKeys> {
    let fail = |e| Error::server("reading the target's foreign keys", e);
    let present = dst
        .query(
            "SELECT n.nspname::text, c.relname::text, co.conname::text, co.convalidated
             FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE co.contype = 'f' AND co.conparentid = 0",
            &[],
        )
        .await
        .map_err(fail)?
        .iter()
        .map(|r| {
            (
                (
                    QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1)),
                    Ident::from_catalog(r.get::<_, String>(2)),
                ),
                r.get(3),
            )
        })
        .collect();
    let partitioned = dst
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'p'",
            &[],
        )
        .await
        .map_err(fail)?
        .iter()
        .map(|r| QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect();
    let version_num =
        dst.query_one("SELECT current_setting('server_version_num')::int", &[]).await.map_err(fail)?.get(0);
    Ok(TargetKeys { present, partitioned, version_num })
}

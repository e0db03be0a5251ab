//! What a physical copy inherits from the source and must not keep: replication
//! slots (on the copy nothing consumes them, so they would hold its WAL
//! forever), this migration's publications and DDL capture's event triggers, and enabled subscriptions (their
//! apply workers would compete with the source's for the same upstream slot).
//!
//! Only slots whose names the source also has are dropped: those are the
//! inherited ones. User publications are part of the schema and stay;
//! subscriptions are disabled, not dropped, and named in the report so the
//! operator can re-enable them after the cutover.

use pgferry_core::names::MigrationName;
use pgferry_core::sql::{Ident, Sql};
use serde::Serialize;
use tokio_postgres::Client;

use crate::error::{Error, ErrorKind, Result};

/// What was removed or disabled on the target.
#[derive(Debug, Default, Serialize)]
pub struct Inherited {
    pub dropped_slots: Vec<String>,
    pub dropped_publications: Vec<String>,
    pub disabled_subscriptions: Vec<String>,
    /// The source's DDL capture (event triggers), inherited by the copy.
    pub removed_ddl_capture: bool,
}

pub(crate) async fn remove(src: &Client, dst: &Client, name: &MigrationName) -> Result<Inherited> {
    let mut done = Inherited::default();
    let source_slots: Vec<String> = src
        .query("SELECT slot_name::text FROM pg_replication_slots", &[])
        .await
        .map_err(|e| Error::server("listing the source's replication slots", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let target_slots = dst
        .query("SELECT slot_name::text, active FROM pg_replication_slots ORDER BY 1", &[])
        .await
        .map_err(|e| Error::server("listing the target's replication slots", e))?;
    for row in target_slots {
        let (slot, active): (String, bool) = (row.get(0), row.get(1));
        if !source_slots.contains(&slot) {
            continue;
        }
        if active {
            return Err(Error::new(
                ErrorKind::Precondition,
                format!("the target's inherited replication slot {slot} is in use"),
            )
            .with_hint("stop whatever streams from the target's copy of that slot, then rerun"));
        }
        dst.execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
            .map_err(|e| Error::server(&format!("dropping the inherited slot {slot} on the target"), e))?;
        done.dropped_slots.push(slot);
    }
    done.dropped_publications = crate::copy::drop_publications(dst, name).await?;
    done.removed_ddl_capture = crate::ddl::remove(dst, name).await?;
    let subscriptions = dst
        .query(
            "SELECT subname::text FROM pg_subscription
             WHERE subenabled AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| Error::server("reading the target's subscriptions", e))?;
    for row in subscriptions {
        let subscription = Ident::from_catalog(row.get::<_, String>(0));
        let sql = Sql::new("ALTER SUBSCRIPTION ").ident(&subscription).push(" DISABLE");
        dst.batch_execute(sql.as_str()).await.map_err(|e| {
            Error::server(&format!("disabling the inherited subscription {subscription} on the target"), e)
        })?;
        done.disabled_subscriptions.push(subscription.as_str().to_string());
    }
    Ok(done)
}

//! `pgferry target restore` and `pgferry target validate-constraints`: the saved
//! foreign keys back (NOT VALID, then validated now or later), the saved triggers
//! back in their exact state, and every sequence set from the source.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use pgferry_core::inventory::SchemaFilter;
use pgferry_core::target::{plan_restore, plan_validate, Action, RestoreInput};
use pgferry_pg::ConnSpec;
use tokio_postgres::Client;

use super::{failures, run_steps, TargetReport};
use crate::error::{Error, Result};

const RESTORE_FAILPOINT: &str = "target-restore:after-step";
const VALIDATE_FAILPOINT: &str = "target-validate-constraints:after-step";

pub async fn restore(source: &ConnSpec, target: &ConnSpec, validate_now: bool) -> Result<TargetReport> {
    let (source_client, target_client) = tokio::join!(connect(source, "source"), connect(target, "target"));
    let (mut source_client, mut client) = match (source_client, target_client) {
        (Ok(s), Ok(t)) => (s, t),
        (s, t) => return Err(Error::combine(s.err().into_iter().chain(t.err()).collect())),
    };
    let source_sequences = pgferry_pg::inventory::read_sequences(&mut source_client, &SchemaFilter::default())
        .await
        .map_err(|e| Error::server("reading the source's sequences", e))?;
    let inventory = pgferry_pg::inventory::read_inventory(&mut client, &SchemaFilter::default())
        .await
        .map_err(|e| Error::server("reading the target's catalog", e))?;
    let journal = read_journal(&client).await?;
    let target_constraints: BTreeMap<_, _> = inventory
        .foreign_keys
        .iter()
        .map(|f| ((f.table.clone(), f.name.clone()), f.validated))
        .chain(inventory.constraints.iter().map(|c| ((c.table.clone(), c.name.clone()), c.validated)))
        .collect();
    let input = RestoreInput {
        target_constraints,
        target_version_num: inventory.server_version_num,
        target_sequences: inventory.sequences.iter().map(|s| s.name.clone()).collect::<BTreeSet<_>>(),
        source_sequences,
        validate_now,
    };
    let plan = plan_restore(&journal, &input);
    // The validations come last; everything before them is the downtime part.
    let split = plan.steps.iter().position(|s| s.action == Action::ValidateForeignKey).unwrap_or(plan.steps.len());
    let started = Instant::now();
    // Each step commits with its journal row, so a step lost in a server crash is
    // lost with its row and redone by a rerun: the steps need not wait for their
    // own WAL flush. One flush makes them all durable before writes are allowed
    // to resume, another the validations before the report says so.
    client
        .batch_execute("SET synchronous_commit = off")
        .await
        .map_err(|e| Error::server("configuring the target session", e))?;
    let mut objects = run_steps(&mut client, RESTORE_FAILPOINT, &plan.steps[..split]).await?;
    flush_wal(&client).await?;
    eprintln!(
        "restore: foreign keys, triggers and sequences done in {:.1} s; writes may resume{}",
        started.elapsed().as_secs_f64(),
        match plan.steps.len() - split {
            0 => String::new(),
            n => format!(" while {n} foreign key(s) are validated"),
        }
    );
    if split < plan.steps.len() {
        objects.extend(run_steps(&mut client, RESTORE_FAILPOINT, &plan.steps[split..]).await?);
        flush_wal(&client).await?;
    }
    Ok(TargetReport {
        command: "target restore",
        target: target.to_string(),
        failures: failures(&objects) + plan.missing_sequences.len(),
        objects,
        missing_sequences: plan.missing_sequences,
        warnings: Vec::new(),
    })
}

/// Validates the foreign keys that restore left NOT VALID. `VALIDATE CONSTRAINT`
/// takes SHARE UPDATE EXCLUSIVE: reads and writes go on while it scans.
pub async fn validate_constraints(target: &ConnSpec) -> Result<TargetReport> {
    let mut client = connect(target, "target").await?;
    let journal = read_journal(&client).await?;
    let objects = run_steps(&mut client, VALIDATE_FAILPOINT, &plan_validate(&journal)).await?;
    Ok(TargetReport {
        command: "target validate-constraints",
        target: target.to_string(),
        failures: failures(&objects),
        objects,
        missing_sequences: Vec::new(),
        warnings: Vec::new(),
    })
}

async fn connect(spec: &ConnSpec, side: &str) -> Result<Client> {
    pgferry_pg::connect(spec).await.map_err(|e| {
        let mut err = Error::from(e);
        err.message = format!("{side}: {}", err.message);
        err
    })
}

async fn read_journal(client: &Client) -> Result<pgferry_core::journal::Journal> {
    pgferry_pg::journal::read_journal(client).await.map_err(|e| Error::server("reading the target's journal", e))
}

/// Flushes the target's WAL up to here, and with it every step committed
/// asynchronously before. A commit waits for the flush only if it wrote WAL
/// itself (one that only took a transaction id, as `SELECT txid_current()`,
/// flushes nothing), so this one writes: pgferry's own state row, which `target
/// prepare` made, or where there is none (sequences set without a journal) a
/// transactional logical message with pgferry's prefix. It waits for the local
/// flush only: a synchronous standby that is down must not hold the restore.
async fn flush_wal(client: &Client) -> Result<()> {
    let flush = client.batch_execute(
        "BEGIN; SET LOCAL synchronous_commit = local;
         DO $$BEGIN
           IF to_regclass('pgferry.state_version') IS NOT NULL THEN
             UPDATE pgferry.state_version SET release = release WHERE side = 'target';
             IF FOUND THEN RETURN; END IF;
           END IF;
           PERFORM pg_logical_emit_message(true, 'pgferry_flush', '');
         END$$;
         COMMIT",
    );
    match flush.await {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(Error::server("flushing the restored objects to disk", e))
        }
    }
}

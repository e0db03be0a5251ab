//! `pgferry target prepare`: save, then drop the target's foreign keys and disable
//! its enabled user triggers, so that a DMS full load (which truncates and inserts
//! table by table, in no particular order) is not stopped by them.

use std::collections::BTreeSet;

use pgferry_core::inventory::{Inventory, SchemaFilter};
use pgferry_core::journal::{save_statements, Journal};
use pgferry_core::target::{plan_prepare, script};
use pgferry_pg::ConnSpec;

use super::{failures, run_steps, TargetReport};
use crate::error::{Error, Result};

/// The failpoint passed after the saving transaction and after each step.
const FAILPOINT: &str = "target-prepare:after-step";

pub enum PrepareOutput {
    /// `--sql-only`: the script that would run; nothing was changed.
    Script(String),
    Report(TargetReport),
}

pub async fn prepare(source: &ConnSpec, target: &ConnSpec, sql_only: bool) -> Result<PrepareOutput> {
    let (source_inventory, target_client) = tokio::join!(read(source, "source"), pgferry_pg::connect(target));
    let mut client = target_client.map_err(|e| side_error("target", e.into()))?;
    let source_inventory = source_inventory?;
    let inventory = pgferry_pg::inventory::read_inventory(&mut client, &SchemaFilter::default())
        .await
        .map_err(|e| Error::server("reading the target's catalog", e))?;
    let saved = pgferry_pg::journal::read_journal(&client)
        .await
        .map_err(|e| Error::server("reading the target's journal", e))?;
    let fresh = Journal::from_inventory(&inventory);
    let journal = saved.merged_with(&fresh);
    let save = save_statements(&fresh);
    let steps = plan_prepare(&journal);
    if sql_only {
        let transactions: Vec<_> = [crate::state::script(pgferry_core::state::Side::Target), save]
            .into_iter()
            .chain(steps.into_iter().map(|s| s.statements))
            .collect();
        return Ok(PrepareOutput::Script(script(
            "pgferry target prepare: save, then drop foreign keys and disable triggers",
            &transactions,
        )));
    }
    tracing::info!(
        foreign_keys = journal.foreign_keys.len(),
        triggers = journal.triggers.len(),
        "saving on the target"
    );
    crate::state::ensure(&client, pgferry_core::state::Side::Target).await?;
    let tx = client.transaction().await.map_err(|e| Error::server("saving the journal", e))?;
    for statement in &save {
        tx.batch_execute(statement.as_str()).await.map_err(|e| Error::server("saving the journal", e))?;
    }
    tx.commit().await.map_err(|e| Error::server("saving the journal", e))?;
    crate::failpoint::hit(FAILPOINT);
    let objects = run_steps(&mut client, FAILPOINT, &steps).await?;
    Ok(PrepareOutput::Report(TargetReport {
        command: "target prepare",
        target: target.to_string(),
        failures: failures(&objects),
        objects,
        missing_sequences: Vec::new(),
        warnings: differences(&source_inventory, &inventory, &journal),
    }))
}

async fn read(spec: &ConnSpec, side: &str) -> Result<Inventory> {
    let mut client = pgferry_pg::connect(spec).await.map_err(|e| side_error(side, e.into()))?;
    pgferry_pg::inventory::read_inventory(&mut client, &SchemaFilter::default())
        .await
        .map_err(|e| Error::server(&format!("reading the {side}'s catalog"), e))
}

fn side_error(side: &str, mut err: Error) -> Error {
    err.message = format!("{side}: {}", err.message);
    err
}

/// Foreign keys and triggers that the source and the target (as it was before
/// prepare: now plus journal) do not share: restore puts back the target's, so a
/// target that is not a copy of the source deserves a look.
fn differences(source: &Inventory, target: &Inventory, journal: &Journal) -> Vec<String> {
    let source_fks: BTreeSet<_> = source.foreign_keys.iter().map(|f| (&f.table, &f.name)).collect();
    let target_fks: BTreeSet<_> = target
        .foreign_keys
        .iter()
        .map(|f| (&f.table, &f.name))
        .chain(journal.foreign_keys.iter().map(|f| (&f.table, &f.name)))
        .collect();
    let source_triggers: BTreeSet<_> = source.triggers.iter().map(|t| (&t.table, &t.name)).collect();
    let target_triggers: BTreeSet<_> = target.triggers.iter().map(|t| (&t.table, &t.name)).collect();
    let mut out = Vec::new();
    for (table, name) in source_fks.difference(&target_fks) {
        out.push(format!("foreign key {name} on {table} is on the source but not on the target"));
    }
    for (table, name) in target_fks.difference(&source_fks) {
        out.push(format!("foreign key {name} on {table} is on the target but not on the source"));
    }
    for (table, name) in source_triggers.difference(&target_triggers) {
        out.push(format!("trigger {name} on {table} is on the source but not on the target"));
    }
    for (table, name) in target_triggers.difference(&source_triggers) {
        out.push(format!("trigger {name} on {table} is on the target but not on the source"));
    }
    out
}

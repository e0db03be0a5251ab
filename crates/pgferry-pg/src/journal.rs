//! Reading the target's journal (`pgferry_core::journal`): the definitions and
//! states saved by `pgferry target prepare`, with the step each object is at.

use pgferry_core::inventory::TriggerState;
use pgferry_core::journal::{ForeignKeyStep, Journal, SavedForeignKey, SavedTrigger, TriggerStep};
use pgferry_core::names::{state_schema, STATE_SCHEMA};
use pgferry_core::sql::{Ident, QualifiedName, ServerSql, Sql};
use tokio_postgres::{Client, Error};

/// The journal's rows, sorted by table and name; empty when there is no journal.
pub async fn read_journal(client: &Client) -> Result<Journal, Error> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass(format('%I.saved_foreign_key', $1::text)) IS NOT NULL
                AND to_regclass(format('%I.saved_trigger', $1::text)) IS NOT NULL",
            &[&STATE_SCHEMA],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(Journal::default());
    }
    let schema = state_schema();
    let fk_sql = Sql::new(
        "SELECT table_schema, table_name, constraint_name, definition, validated, partitioned_table, state FROM ",
    )
    .ident(&schema)
    .push(".saved_foreign_key ORDER BY table_schema, table_name, constraint_name");
    let foreign_keys = client
        .query(fk_sql.as_str(), &[])
        .await?
        .iter()
        .map(|r| SavedForeignKey {
            table: QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1)),
            name: Ident::from_catalog(r.get::<_, String>(2)),
            definition: ServerSql::from_catalog(r.get::<_, String>(3)),
            validated: r.get(4),
            partitioned_table: r.get(5),
            step: ForeignKeyStep::parse(r.get(6)).expect("the journal's CHECK constraint allows only known states"),
        })
        .collect();
    let trigger_sql = Sql::new(
        "SELECT table_schema, table_name, trigger_name, saved_state, cloned_from_parent, definition, state FROM ",
    )
    .ident(&schema)
    .push(".saved_trigger ORDER BY table_schema, table_name, trigger_name");
    let triggers = client
        .query(trigger_sql.as_str(), &[])
        .await?
        .iter()
        .map(|r| SavedTrigger {
            table: QualifiedName::from_catalog(r.get::<_, String>(0), r.get::<_, String>(1)),
            name: Ident::from_catalog(r.get::<_, String>(2)),
            saved_state: TriggerState::parse(r.get(3))
                .expect("the journal's CHECK constraint allows only known states"),
            cloned_from_parent: r.get(4),
            definition: ServerSql::from_catalog(r.get::<_, String>(5)),
            step: TriggerStep::parse(r.get(6)).expect("the journal's CHECK constraint allows only known states"),
        })
        .collect();
    Ok(Journal { foreign_keys, triggers })
}

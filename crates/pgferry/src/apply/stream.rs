//! The source's change stream: the migration's slot read with pgoutput over a
//! replication connection
//! ([Streaming Replication Protocol](https://www.postgresql.org/docs/current/protocol-replication.html)).
//!
//! pgoutput renders each value with its type's output function in the walsender's
//! session, so the settings that shape text output are pinned at connection
//! start: ISO dates, `postgres` intervals, UTC, shortest-exact floats, hex bytea,
//! and the C locale's money format. The apply sessions on the target set the same
//! values ([`TARGET_SESSION_SQL`]) so each value is read back by the matching
//! input function under the same settings.
//!
//! The stream starts at the last applied position (or the slot's consistent
//! point), and the server is told the same position as flushed until a later one
//! is committed on the target, so the slot never releases a change the target
//! does not hold.

use pgferry_core::names::MigrationName;
use pgferry_pg::replication::{open_gated, replication_config};
use pgferry_pg::ConnSpec;
use pgferry_pgoutput::Lsn;
use pgwire_replication::{PgWireError, ReplicationClient};

use super::liveness::Liveness;

/// Startup options of the replication connection.
const OUTPUT_SETTINGS: &str =
    "-c datestyle=ISO -c intervalstyle=postgres -c timezone=UTC -c extra_float_digits=3 -c bytea_output=hex -c lc_monetary=C";

/// The same settings for the target's apply session, plus what apply needs:
/// replica mode (user triggers and foreign-key triggers do not fire, as for
/// PostgreSQL's own subscriber, see
/// [session_replication_role](https://www.postgresql.org/docs/current/runtime-config-client.html#GUC-SESSION-REPLICATION-ROLE)),
/// an empty search_path (type names are read schema-qualified); its timeouts
/// come from [`Liveness::target_session_sql`].
pub(crate) const TARGET_SESSION_SQL: &str = "SET datestyle = ISO; SET intervalstyle = postgres; SET timezone = UTC;
    SET extra_float_digits = 3; SET bytea_output = hex; SET lc_monetary = 'C';
    SET session_replication_role = replica; SET search_path = ''";

/// Opens the stream at `start`, with the status updates [`Liveness`] needs.
pub(crate) async fn open(
    source: &ConnSpec,
    name: &MigrationName,
    slot: &str,
    start: Lsn,
    liveness: Liveness,
) -> Result<ReplicationClient, PgWireError> {
    let publications =
        vec![name.publication().as_str().to_string(), name.insert_only_publication().as_str().to_string()];
    let mut config = replication_config(source, slot, publications);
    let settings = match liveness.startup_option() {
        Some(timeout) => format!("{OUTPUT_SETTINGS} {timeout}"),
        None => OUTPUT_SETTINGS.to_string(),
    };
    config.options = Some(match &config.options {
        Some(user) => format!("{user} {settings}"),
        None => settings,
    });
    let start = pgwire_replication::Lsn(start.0);
    config = config
        .with_start_lsn(start)
        .with_ack_lsn(start)
        // Acknowledgements reach the source within this: a drain that ends with one
        // (follow --until-caught-up, the cutover) waits for it.
        .with_status_interval(std::time::Duration::from_millis(100))
        // Unsolicited updates only after a whole wal_sender_timeout of silence:
        // the server asks for a reply first, so a live one is heard regularly.
        .with_wakeup_interval(liveness.status_wakeup());
    let mut stream = open_gated(source, config).await?;
    stream.start().await?;
    Ok(stream)
}

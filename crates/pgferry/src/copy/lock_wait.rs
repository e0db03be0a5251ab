//! Says why the copy stands still when a worker's read waits for a lock.
//!
//! A worker's COPY, and the listing of the tables' sizes before it, take ACCESS
//! SHARE on a table, which only an ACCESS EXCLUSIVE lock blocks: an
//! application's `LOCK TABLE`, an `ALTER TABLE`, a `TRUNCATE` or `VACUUM FULL`
//! in a transaction left open. Without a word the copy would look hung for as
//! long as that transaction lasts. While the copy runs (every step: the listing,
//! `pg_dump`, whose sessions carry pgferry's application name, the reads), every few seconds,
//! the sessions of pgferry (by application name) on the source database that
//! wait for a lock are looked up with the sessions blocking them
//! ([`pg_blocking_pids`](https://www.postgresql.org/docs/current/functions-info.html#FUNCTIONS-INFO-SESSION)),
//! and each blocker is named once: its pid, role, application, state and
//! query, and how to end it. Nothing is waited for or ended here.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use pgferry_pg::ConnSpec;

/// How long a read waits before the first word about it.
const FIRST_WORD_AFTER: Duration = Duration::from_secs(5);

/// Runs `work` while watching for its lock waits; the watch ends with it (or
/// earlier, quietly, if it cannot read the source: the work goes on).
pub(crate) async fn watching<T>(source: &ConnSpec, work: impl Future<Output = T>) -> T {
    tokio::pin!(work);
    tokio::select! {
        done = &mut work => return done,
        () = watch(source) => {}
    }
    work.await
}

/// Watches until dropped; returns only when the source cannot be read.
async fn watch(source: &ConnSpec) {
    let Ok(src) = pgferry_pg::connect(source).await else { return };
    let mut told = HashSet::new();
    loop {
        tokio::time::sleep(FIRST_WORD_AFTER).await;
        let rows = src
            .query(
                "SELECT w.pid, coalesce(l.relation::regclass::text, l.locktype), b.pid, coalesce(b.usename::text, ''),
                        coalesce(b.application_name, ''), coalesce(b.state, ''),
                        coalesce(extract(epoch FROM now() - coalesce(b.xact_start, b.state_change))::bigint, 0),
                        left(coalesce(b.query, ''), 200)
                 FROM pg_stat_activity w
                 JOIN pg_locks l ON l.pid = w.pid AND NOT l.granted
                 CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS blocking(pid)
                 JOIN pg_stat_activity b ON b.pid = blocking.pid
                 WHERE w.datname = current_database() AND w.application_name = $1 AND w.wait_event_type = 'Lock'
                   AND w.state_change < now() - make_interval(secs => $2)",
                &[&source.application_name, &(FIRST_WORD_AFTER.as_secs_f64())],
            )
            .await;
        let Ok(rows) = rows else { return };
        for row in rows {
            let (waiter, relation, blocker): (i32, String, i32) = (row.get(0), row.get(1), row.get(2));
            if !told.insert((waiter, blocker)) {
                continue;
            }
            let (role, application, state, seconds, query): (String, String, String, i64, String) =
                (row.get(3), row.get(4), row.get(5), row.get(6), row.get(7));
            tracing::warn!(
                "the copy waits for a lock on {relation} held by the source's session pid {blocker} (role {role:?}, application {application:?}, {state} for {seconds} s: {query}); it goes on by itself once that transaction ends (SELECT pg_terminate_backend({blocker}) ends it now)"
            );
        }
    }
}

//! `--metrics-listen ADDR`: the migration's figures in Prometheus text format on
//! `http://ADDR/metrics`, for the dashboards operators already watch during the
//! weeks of change capture. Names, types and labels: docs/metrics.md.
//!
//! The library emits events and knows nothing of Prometheus ([`pgferry::events`]);
//! this observer turns them into the `metrics` facade's counters, gauges and
//! histogram, and `metrics-exporter-prometheus` serves them (its own small HTTP
//! listener on the command's runtime). Without the flag nothing is recorded or
//! served. The hot events (copied bytes, applied batches) touch handles
//! registered once, so the cost per event is an atomic add.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Args;
use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter, Gauge, Label, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use pgferry::apply::{FollowEvent, TableChanges};
use pgferry::copy::CopyEvent;
use pgferry::events::{Event, Events, Observer, Phase};
use pgferry::{Error, ErrorKind, Result};

/// The batch durations' histogram buckets, in seconds.
const BATCH_SECONDS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Args, Debug, Clone, Default)]
pub(crate) struct MetricsArgs {
    /// Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9187); see docs/metrics.md.
    #[arg(long, value_name = "ADDR", env = "PGFERRY_METRICS_LISTEN")]
    pub(crate) metrics_listen: Option<SocketAddr>,
}

/// The command's observers, with the metrics' when `--metrics-listen` is given
/// (its listener is bound here: a taken address fails the command at once).
pub(crate) fn events(args: &MetricsArgs, observers: Vec<Arc<dyn Observer>>) -> Result<Events> {
    Ok(events_of(serve_if_asked(args)?, observers, None))
}

/// Installs the exporter when `--metrics-listen` is given; whether it serves.
pub(crate) fn serve_if_asked(args: &MetricsArgs) -> Result<bool> {
    match args.metrics_listen {
        Some(address) => serve(address).map(|()| true),
        None => Ok(false),
    }
}

/// `observers`, and the metrics' when the exporter serves, every metric
/// labelled `database` when one database of several is moved (`--all-databases`).
pub(crate) fn events_of(serving: bool, mut observers: Vec<Arc<dyn Observer>>, database: Option<&str>) -> Events {
    if serving {
        observers.push(Arc::new(MetricsObserver::new(database)));
    }
    Events::to(observers)
}

/// Installs the exporter.
fn serve(address: SocketAddr) -> Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(address)
        .set_buckets_for_metric(Matcher::Full("pgferry_apply_batch_seconds".into()), &BATCH_SECONDS)
        .and_then(|builder| builder.install())
        .map_err(|e| {
            Error::new(ErrorKind::Usage, format!("--metrics-listen {address}: cannot serve metrics there: {e}"))
                .with_hint("give a free address and port this machine has, e.g. 127.0.0.1:9187")
        })?;
    describe();
    Ok(())
}

fn describe() {
    describe_gauge!(
        "pgferry_phase",
        "1 for the phase the migration is in (copy, seed, follow, validate, cutover), 0 for the others"
    );
    describe_gauge!(
        "pgferry_replication_lag_bytes",
        Unit::Bytes,
        "WAL between the source's latest position seen and the last position applied on the target"
    );
    describe_gauge!(
        "pgferry_replication_lag_seconds",
        Unit::Seconds,
        "Age of the last applied source transaction while behind (0 when caught up)"
    );
    describe_counter!("pgferry_changes_applied_total", "Row changes applied on the target, by table and kind");
    describe_counter!("pgferry_transactions_applied_total", "Source transactions applied on the target");
    describe_histogram!(
        "pgferry_apply_batch_seconds",
        Unit::Seconds,
        "Time from a batch's first change to its commit on the target"
    );
    describe_counter!("pgferry_copy_bytes_total", Unit::Bytes, "Bytes of table data copied");
    describe_counter!("pgferry_copy_rows_total", "Rows copied (counted when their piece commits)");
    describe_gauge!("pgferry_copy_tables_done", "Tables whose data is on the target");
    describe_gauge!("pgferry_slot_retained_bytes", Unit::Bytes, "WAL the source keeps for the migration's slot");
    describe_gauge!("pgferry_validation_mismatches", "Mismatched chunks found by the last validation");
}

/// Turns events into metrics.
struct MetricsObserver {
    /// `database`, under `--all-databases`.
    labels: Vec<Label>,
    copy_bytes: Counter,
    copy_rows: Counter,
    copy_tables_done: Gauge,
    transactions: Counter,
    lag_bytes: Gauge,
    lag_seconds: Gauge,
    slot_retained: Gauge,
}

impl MetricsObserver {
    fn new(database: Option<&str>) -> Self {
        let labels: Vec<Label> = database.map(|d| Label::new("database", d.to_string())).into_iter().collect();
        let observer = MetricsObserver {
            copy_bytes: counter!("pgferry_copy_bytes_total", labels.clone()),
            copy_rows: counter!("pgferry_copy_rows_total", labels.clone()),
            copy_tables_done: gauge!("pgferry_copy_tables_done", labels.clone()),
            transactions: counter!("pgferry_transactions_applied_total", labels.clone()),
            lag_bytes: gauge!("pgferry_replication_lag_bytes", labels.clone()),
            lag_seconds: gauge!("pgferry_replication_lag_seconds", labels.clone()),
            slot_retained: gauge!("pgferry_slot_retained_bytes", labels.clone()),
            labels,
        };
        observer.phase(None);
        gauge!("pgferry_validation_mismatches", observer.labels.clone()).set(0.0);
        observer
    }

    /// `labels` and these.
    fn with(&self, more: &[(&'static str, String)]) -> Vec<Label> {
        let mut labels = self.labels.clone();
        labels.extend(more.iter().map(|(k, v)| Label::new(*k, v.clone())));
        labels
    }

    /// 1 for the phase `now`, 0 for the others.
    fn phase(&self, now: Option<Phase>) {
        for phase in Phase::ALL {
            let value = if Some(phase) == now { 1.0 } else { 0.0 };
            gauge!("pgferry_phase", self.with(&[("phase", phase.as_str().to_string())])).set(value);
        }
    }

    fn applied(&self, transactions: u64, tables: &[(String, TableChanges)], seconds: f64) {
        self.transactions.increment(transactions);
        histogram!("pgferry_apply_batch_seconds", self.labels.clone()).record(seconds);
        for (table, counts) in tables {
            let kinds = [
                ("insert", counts.inserts),
                ("update", counts.updates),
                ("delete", counts.deletes),
                ("truncate", counts.truncates),
            ];
            for (kind, n) in kinds.into_iter().filter(|(_, n)| *n > 0) {
                let labels = self.with(&[("table", table.clone()), ("kind", kind.to_string())]);
                counter!("pgferry_changes_applied_total", labels).increment(n as u64);
            }
        }
    }
}

impl Observer for MetricsObserver {
    fn observe(&self, event: &Event) {
        match event {
            Event::Phase(now) => self.phase(Some(*now)),
            Event::Copy(CopyEvent::Bytes { bytes, .. }) => self.copy_bytes.increment(*bytes),
            Event::Copy(CopyEvent::ChunkDone { rows, .. }) => self.copy_rows.increment(*rows),
            Event::Copy(CopyEvent::TableDone { .. } | CopyEvent::Kept { .. }) => self.copy_tables_done.increment(1.0),
            Event::Follow(FollowEvent::Status { lag_bytes, lag_seconds, slot_retained_bytes, .. }) => {
                self.lag_bytes.set(*lag_bytes as f64);
                self.lag_seconds.set(*lag_seconds);
                if let Some(retained) = slot_retained_bytes {
                    self.slot_retained.set(*retained as f64);
                }
            }
            Event::Follow(FollowEvent::Applied { transactions, tables, seconds }) => {
                self.applied(*transactions, tables, *seconds)
            }
            Event::Validated { mismatched_chunks, .. } => {
                gauge!("pgferry_validation_mismatches", self.labels.clone()).set(*mismatched_chunks as f64)
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_of_one_database_among_several_carries_its_name() {
        let recorder = PrometheusBuilder::new().build_recorder();
        metrics::with_local_recorder(&recorder, || {
            let shop = MetricsObserver::new(Some("shop"));
            let alone = MetricsObserver::new(None);
            shop.observe(&Event::Phase(Phase::Follow));
            shop.observe(&Event::Copy(CopyEvent::Bytes { table: "t".into(), bytes: 10 }));
            alone.observe(&Event::Copy(CopyEvent::Bytes { table: "t".into(), bytes: 3 }));
        });
        let text = recorder.handle().render();
        for line in [
            "pgferry_phase{database=\"shop\",phase=\"follow\"} 1",
            "pgferry_phase{database=\"shop\",phase=\"copy\"} 0",
            "pgferry_copy_bytes_total{database=\"shop\"} 10",
            "pgferry_copy_bytes_total 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
    }
}

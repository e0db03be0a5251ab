//! An application writing to a cluster in the background: one connection
//! committing the statements a closure makes for each round, back to back, until
//! stopped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Runs `write(stop, committed)` on a runtime of its own in a new thread: the
/// flag that asks it to stop, the rounds it counts as committed, the thread.
fn in_a_thread<T, F>(
    write: impl FnOnce(Arc<AtomicBool>, Arc<AtomicU64>) -> F + Send + 'static,
) -> (Arc<AtomicBool>, Arc<AtomicU64>, JoinHandle<T>)
where
    T: Send + 'static,
    F: std::future::Future<Output = T>,
{
    let (stop, committed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let (stopping, counter) = (Arc::clone(&stop), Arc::clone(&committed));
    let handle = thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("writer runtime");
        runtime.block_on(write(stopping, counter))
    });
    (stop, committed, handle)
}

/// A running writer; [`Writer::stop`] ends it and returns the rounds committed.
pub struct Writer {
    stop: Arc<AtomicBool>,
    committed: Arc<AtomicU64>,
    handle: JoinHandle<u64>,
}

impl Writer {
    /// Starts writing to `url`; `round(n)` gives the SQL of the `n`-th round
    /// (from 1), run as one `batch_execute`. Returns once a few rounds committed.
    ///
    /// # Panics
    /// In the writer thread when a round fails (seen at [`Writer::stop`]).
    pub fn start(url: String, round: impl Fn(u64) -> String + Send + 'static) -> Writer {
        let (stop, committed, handle) = in_a_thread(move |stopping, counter| async move {
            let (client, connection) =
                tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("writer connects");
            tokio::spawn(connection);
            let mut n = 0;
            while !stopping.load(Ordering::Relaxed) {
                n += 1;
                client.batch_execute(&round(n)).await.unwrap_or_else(|e| {
                    let cause = e.as_db_error().map_or_else(|| e.to_string(), |db| db.message().to_string());
                    panic!("writer round {n}: {cause}")
                });
                counter.store(n, Ordering::Relaxed);
            }
            n
        });
        while committed.load(Ordering::Relaxed) < 20 && !handle.is_finished() {
            thread::sleep(Duration::from_millis(5));
        }
        Writer { stop, committed, handle }
    }

    /// The rounds committed so far (0 once a round failed: see [`Writer::stop`]).
    pub fn rounds(&self) -> u64 {
        if self.handle.is_finished() {
            return 0;
        }
        self.committed.load(Ordering::Relaxed)
    }

    /// Stops after the round in progress; the rounds committed.
    ///
    /// # Panics
    /// When a round failed.
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("writer thread")
    }
}

/// An application that outlives a fence: like [`Writer`], but a refused
/// connection or a failed round is not an error. It reconnects (every 50 ms)
/// and goes on until stopped, the way a real application retries while its
/// database is fenced and after a rollback. Which rounds committed is the
/// source's to say: compare the servers, not the counts.
pub struct LiveWriter {
    stop: Arc<AtomicBool>,
    committed: Arc<AtomicU64>,
    handle: JoinHandle<()>,
}

impl LiveWriter {
    /// Starts writing to `url`, `round(n)` as one `batch_execute` per round;
    /// returns once a few rounds committed.
    ///
    /// # Panics
    /// When no round commits within 30 s.
    pub fn start(url: String, round: impl Fn(u64) -> String + Send + 'static) -> LiveWriter {
        let (stop, committed, handle) = in_a_thread(move |stopping, counter| async move {
            let mut n = 0;
            while !stopping.load(Ordering::Relaxed) {
                let Ok((client, connection)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                tokio::spawn(connection);
                while !stopping.load(Ordering::Relaxed) && !client.is_closed() {
                    n += 1;
                    match client.batch_execute(&round(n)).await {
                        Ok(()) => {
                            counter.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }
        });
        let writer = LiveWriter { stop, committed, handle };
        writer.wait_for_rounds(20);
        writer
    }

    /// The rounds committed so far.
    pub fn rounds(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// Waits until `more` rounds beyond those committed so far commit.
    ///
    /// # Panics
    /// When they do not within 30 s.
    pub fn wait_for_rounds(&self, more: u64) {
        let until = self.rounds() + more;
        let started = std::time::Instant::now();
        while self.rounds() < until {
            assert!(started.elapsed() < Duration::from_secs(30), "the writer committed no round for 30 s");
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops after the round in progress; the rounds committed.
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("writer thread");
        self.committed.load(Ordering::Relaxed)
    }
}

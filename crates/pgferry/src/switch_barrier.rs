//! One switch for the cutovers of several databases (`cutover --all-databases`).
//!
//! Each database's cutover fences, drains and checks its own database as
//! always, journals that its switch starts, then arrives here. When every one
//! has arrived, the last to arrive runs the operator's switch command once (its
//! process group journaled in its own database) and every cutover takes that
//! outcome as its own: all switched, or all roll back as after a failed switch
//! command. A cutover that fails before it arrives (its go/no-go, its drain, a
//! signal) aborts the barrier, and every other one then rolls back too: no
//! database is switched unless all are. Once all have arrived the outcome is
//! the switch command's alone; an abort then changes nothing.

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::error::{Error, ErrorKind, Result};

/// The cutovers' meeting point before their one switch.
#[derive(Debug)]
pub struct SwitchBarrier {
    expected: usize,
    arrived: Mutex<usize>,
    /// `None` until settled: the switch's outcome, or why it will not run.
    outcome: watch::Sender<Option<std::result::Result<(), String>>>,
}

impl SwitchBarrier {
    /// A barrier for `expected` cutovers.
    pub fn new(expected: usize) -> SwitchBarrier {
        SwitchBarrier { expected, arrived: Mutex::new(0), outcome: watch::channel(None).0 }
    }

    /// Arrives; the last to arrive runs `switch`, every one gets its outcome.
    pub(crate) async fn arrive(&self, switch: impl Future<Output = Result<()>>) -> Result<()> {
        let mut outcome = self.outcome.subscribe();
        let last = {
            let mut arrived = self.arrived.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            *arrived += 1;
            *arrived == self.expected && self.outcome.borrow().is_none()
        };
        if last {
            let result = switch.await;
            self.outcome.send_replace(Some(result.as_ref().map(|_| ()).map_err(|e| e.message.clone())));
            return result;
        }
        let settled = outcome.wait_for(Option::is_some).await.map(|o| o.clone()).ok().flatten();
        match settled {
            Some(Ok(())) => Ok(()),
            Some(Err(why)) => Err(Error::new(
                ErrorKind::Precondition,
                format!("the instance's one switch did not run for this database: {why}"),
            )),
            None => Err(Error::new(ErrorKind::Precondition, "the instance's switch was abandoned")),
        }
    }

    /// A cutover failed before it arrived: the others will not switch. Nothing
    /// once every one has arrived (the switch command's outcome stands).
    pub fn abort(&self, why: &str) {
        let arrived = self.arrived.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *arrived < self.expected {
            self.outcome.send_if_modified(|o| match o {
                None => {
                    *o = Some(Err(why.to_string()));
                    true
                }
                Some(_) => false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_last_to_arrive_switches_once_for_all() {
        let barrier = SwitchBarrier::new(3);
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let switch = || async {
            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        };
        let (a, b, c) = tokio::join!(barrier.arrive(switch()), barrier.arrive(switch()), barrier.arrive(switch()));
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_switch_or_an_abort_before_all_arrived_fails_every_one() {
        let barrier = SwitchBarrier::new(2);
        let failing = || async { Err(Error::new(ErrorKind::Server, "dns update refused")) };
        let (a, b) = tokio::join!(barrier.arrive(failing()), barrier.arrive(failing()));
        assert!(a.unwrap_err().message.contains("dns update refused"));
        assert!(b.unwrap_err().message.contains("dns update refused"));

        let barrier = SwitchBarrier::new(2);
        let waiting = barrier.arrive(async { Ok(()) });
        let (outcome, ()) = tokio::join!(waiting, async { barrier.abort("database \"b\": its drain failed") });
        assert!(outcome.unwrap_err().message.contains("its drain failed"));
        // Once all arrived, an abort changes nothing.
        let barrier = SwitchBarrier::new(1);
        barrier.arrive(async { Ok(()) }).await.unwrap();
        barrier.abort("too late");
        assert_eq!(*barrier.outcome.borrow(), Some(Ok(())));
    }
}

//! One switch for the cutovers of several databases (`cutover --all-databases`).
//!
//! Each database's cutover fences, drains and checks its own database as
//! always, then says it is [`SwitchBarrier::ready`]; once every one is, each
//! journals that its switch starts and [`SwitchBarrier::arrive`]s, and the last
//! to arrive runs the operator's switch command once (its process group
//! journaled in its own database); every cutover takes that outcome as its own:
//! all switched, or all roll back as after a failed switch command. Waiting for
//! the others happens before anything says "switching", so a kill while a
//! database waits leaves every journal before the switch, and a rerun rolls back
//! by itself. A cutover that fails before every one arrived (its drain, its
//! check, a signal) aborts the barrier, and every other one then rolls back:
//! no database is switched unless all are. Once all have arrived the outcome is
//! the switch command's alone; an abort then changes nothing.
//!
//! Each database journals the barrier's [`SwitchBarrier::id`] with its cutover,
//! so a rerun after a kill knows which databases stopped in one instance
//! cutover: one of them stopped before its switch proves that the switch never
//! ran for any ([`pgferry_core::cutover::instance_switch`]). The outside fence
//! is raised once for all of them ([`SwitchBarrier::outside_fence_once`]).

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::error::{Error, ErrorKind, Result};

/// Where the cutovers are.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Stage {
    /// Not every one is ready.
    Gathering,
    /// Every one is fenced, drained and checked.
    Ready,
    /// The switch's outcome, or why it will not run.
    Done(std::result::Result<(), String>),
}

/// The cutovers' meeting point before their one switch.
#[derive(Debug)]
pub struct SwitchBarrier {
    id: String,
    /// The outside fence's outcome, raised once for the instance.
    outside: tokio::sync::OnceCell<std::result::Result<(), String>>,
    /// A database began raising it (a cancelled raise is never run again by another).
    outside_started: std::sync::atomic::AtomicBool,
    expected: usize,
    /// How many are ready, and how many arrived at the switch.
    counts: Mutex<(usize, usize)>,
    stage: watch::Sender<Stage>,
}

impl SwitchBarrier {
    /// A barrier for `expected` cutovers.
    pub fn new(expected: usize) -> SwitchBarrier {
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        SwitchBarrier {
            id: format!("{}.{:09}-{}", started.as_secs(), started.subsec_nanos(), std::process::id()),
            outside: tokio::sync::OnceCell::new(),
            outside_started: std::sync::atomic::AtomicBool::new(false),
            expected,
            counts: Mutex::new((0, 0)),
            stage: watch::channel(Stage::Gathering).0,
        }
    }

    /// This instance cutover's name in each database's journal.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The outside fence (`--fence-command`) is the instance's, not a
    /// database's: the first database to reach it runs `raise` (journaled on
    /// its own source, so that its rollback lifts it), every other one waits
    /// for that outcome and runs nothing. When the raising database stops
    /// before the command ended (its drain failed, say), the others fail too:
    /// the command is not run a second time beside that database's lift.
    pub(crate) async fn outside_fence_once(&self, raise: impl Future<Output = Result<()>>) -> Result<()> {
        let outcome = self
            .outside
            .get_or_init(|| async {
                if self.outside_started.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    return Err("the database raising it stopped before its command ended".to_string());
                }
                raise.await.map_err(|e| e.message)
            })
            .await;
        outcome.clone().map_err(|why| {
            Error::new(ErrorKind::Precondition, format!("the instance's outside fence was not raised: {why}"))
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, (usize, usize)> {
        self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// This database is fenced, drained and checked; returns once every one is
    /// (or with why the switch will not run).
    pub(crate) async fn ready(&self) -> Result<()> {
        let mut stage = self.stage.subscribe();
        {
            let mut counts = self.counts();
            counts.0 += 1;
            if counts.0 == self.expected {
                self.stage.send_if_modified(|s| match s {
                    Stage::Gathering => {
                        *s = Stage::Ready;
                        true
                    }
                    _ => false,
                });
            }
        }
        let now = stage.wait_for(|s| *s != Stage::Gathering).await.map(|s| s.clone()).ok();
        match now {
            Some(Stage::Done(Err(why))) => Err(not_run(&why)),
            Some(_) => Ok(()),
            None => Err(not_run("the instance's cutover was abandoned")),
        }
    }

    /// Arrives at the switch; the last to arrive runs `switch`, every one gets its outcome.
    pub(crate) async fn arrive(&self, switch: impl Future<Output = Result<()>>) -> Result<()> {
        let mut stage = self.stage.subscribe();
        let last = {
            let mut counts = self.counts();
            counts.1 += 1;
            counts.1 == self.expected && *self.stage.borrow() == Stage::Ready
        };
        if last {
            let result = switch.await;
            self.stage.send_replace(Stage::Done(result.as_ref().map(|_| ()).map_err(|e| e.message.clone())));
            return result;
        }
        let now = stage.wait_for(|s| matches!(s, Stage::Done(_))).await.map(|s| s.clone()).ok();
        match now {
            Some(Stage::Done(Ok(()))) => Ok(()),
            Some(Stage::Done(Err(why))) => Err(not_run(&why)),
            _ => Err(not_run("the instance's cutover was abandoned")),
        }
    }

    /// A cutover failed before every one arrived: none will switch. Nothing
    /// once every one has arrived (the switch command's outcome stands).
    pub fn abort(&self, why: &str) {
        let counts = self.counts();
        if counts.1 < self.expected {
            self.stage.send_if_modified(|s| match s {
                Stage::Done(_) => false,
                _ => {
                    *s = Stage::Done(Err(why.to_string()));
                    true
                }
            });
        }
    }
}

fn not_run(why: &str) -> Error {
    Error::new(ErrorKind::Precondition, format!("the instance's one switch did not run for this database: {why}"))
        .with_hint("every database of the instance rolls back; fix what the database named says, then rerun pgferry cutover --all-databases")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ready_then_arrive(barrier: &SwitchBarrier, switch: impl Future<Output = Result<()>>) -> Result<()> {
        barrier.ready().await?;
        barrier.arrive(switch).await
    }

    #[tokio::test]
    async fn the_last_to_arrive_switches_once_for_all() {
        let barrier = SwitchBarrier::new(3);
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let switch = || async {
            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        };
        let (a, b, c) = tokio::join!(
            ready_then_arrive(&barrier, switch()),
            ready_then_arrive(&barrier, switch()),
            ready_then_arrive(&barrier, switch())
        );
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_outside_fence_is_raised_once_for_every_database() {
        let barrier = SwitchBarrier::new(3);
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let raise = || async {
            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::task::yield_now().await;
            Err(Error::new(ErrorKind::Server, "the security group refused"))
        };
        let (a, b, c) = tokio::join!(
            barrier.outside_fence_once(raise()),
            barrier.outside_fence_once(raise()),
            barrier.outside_fence_once(raise())
        );
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        for outcome in [a, b, c] {
            assert!(outcome.unwrap_err().message.contains("the security group refused"));
        }
    }

    #[tokio::test]
    async fn a_raise_cancelled_midway_is_not_run_again_by_another_database() {
        let barrier = SwitchBarrier::new(2);
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let raise = || async {
            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            Ok(())
        };
        let cancelled =
            tokio::time::timeout(std::time::Duration::from_millis(20), barrier.outside_fence_once(raise())).await;
        assert!(cancelled.is_err(), "the first database's future dropped midway");
        let second = barrier.outside_fence_once(raise()).await;
        assert!(second.unwrap_err().message.contains("stopped before its command ended"));
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_switch_or_an_abort_before_all_arrived_fails_every_one() {
        let barrier = SwitchBarrier::new(2);
        let failing = || async { Err(Error::new(ErrorKind::Server, "dns update refused")) };
        let (a, b) = tokio::join!(ready_then_arrive(&barrier, failing()), ready_then_arrive(&barrier, failing()));
        assert!(a.unwrap_err().message.contains("dns update refused"));
        assert!(b.unwrap_err().message.contains("dns update refused"));

        // One waits ready, the other fails before it is: the waiting one never switches.
        let barrier = SwitchBarrier::new(2);
        let waiting = ready_then_arrive(&barrier, async { Ok(()) });
        let (outcome, ()) = tokio::join!(waiting, async { barrier.abort("database \"b\": its drain failed") });
        assert!(outcome.unwrap_err().message.contains("its drain failed"));

        // Both ready, one fails to journal its switch: the other one, arrived, never switches.
        let barrier = SwitchBarrier::new(2);
        let (first, second) = tokio::join!(ready_then_arrive(&barrier, async { Ok(()) }), async {
            barrier.ready().await.unwrap();
            barrier.abort("database \"b\": journaling its switch failed");
        });
        assert!(first.unwrap_err().message.contains("journaling its switch failed"));
        let () = second;

        // Once all arrived, an abort changes nothing.
        let barrier = SwitchBarrier::new(1);
        ready_then_arrive(&barrier, async { Ok(()) }).await.unwrap();
        barrier.abort("too late");
        assert_eq!(*barrier.stage.borrow(), Stage::Done(Ok(())));
    }
}

//! The one worker pool: the copy's data, index builds, foreign keys and statistics,
//! and validation's chunks all run through it.
//!
//! `workers` workers take jobs from one queue in its order (the plans put the
//! largest first, the copy's critical path), each through its own session (its
//! connections, a snapshot imported once, session settings) opened before its
//! first job and kept for the rest: a job is cheap next to a connection, so a
//! session per job (`buffer_unordered` over the jobs) would not do. A worker that
//! finds the queue empty opens nothing. The first error ends the pool: the other
//! workers are dropped where they wait, and their connections with them.

use std::sync::{Mutex, PoisonError};

use crate::error::Result;

/// Runs `work` on every job of `jobs`, in order, `workers` at a time; returns
/// the outcomes in the order the jobs finished.
pub(crate) async fn each<J, S, T>(
    jobs: impl IntoIterator<Item = J>,
    workers: usize,
    open: impl AsyncFn() -> Result<S>,
    work: impl AsyncFn(&S, J) -> Result<T>,
) -> Result<Vec<T>> {
    let queue = Mutex::new(jobs.into_iter());
    let next = async || queue.lock().unwrap_or_else(PoisonError::into_inner).next();
    drain(next, workers, open, work).await
}

/// Runs `work` on each job `next` hands out, `workers` at a time, until it
/// hands out none (it may wait for one, as the index builds wait for their
/// table's data).
pub(crate) async fn drain<J, S, T>(
    next: impl AsyncFn() -> Option<J>,
    workers: usize,
    open: impl AsyncFn() -> Result<S>,
    work: impl AsyncFn(&S, J) -> Result<T>,
) -> Result<Vec<T>> {
    let done = Mutex::new(Vec::new());
    let worker = async || -> Result<()> {
        let Some(first) = next().await else { return Ok(()) };
        let session = open().await?;
        let mut job = Some(first);
        while let Some(this) = job {
            let outcome = work(&session, this).await?;
            done.lock().unwrap_or_else(PoisonError::into_inner).push(outcome);
            job = next().await;
        }
        Ok(())
    };
    futures_util::future::try_join_all((0..workers.max(1)).map(|_| worker())).await?;
    Ok(done.into_inner().unwrap_or_else(PoisonError::into_inner))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use super::*;
    use crate::error::{Error, ErrorKind};

    #[tokio::test]
    async fn jobs_are_taken_in_order_by_at_most_the_workers_each_with_one_session() {
        let (opened, running, most) = (Cell::new(0), Cell::new(0), Cell::new(0));
        let taken = Mutex::new(Vec::new());
        let done = each(
            [5u64, 4, 3, 2, 1, 0],
            3,
            async || {
                opened.set(opened.get() + 1);
                Ok(opened.get())
            },
            async |session: &usize, job: u64| {
                taken.lock().unwrap().push(job);
                running.set(running.get() + 1);
                most.set(most.get().max(running.get()));
                // 200 ms apart: a loaded machine's scheduling jitter does not reorder them.
                tokio::time::sleep(Duration::from_millis(job * 200)).await;
                running.set(running.get() - 1);
                Ok((*session, job))
            },
        )
        .await
        .unwrap();
        assert_eq!(taken.into_inner().unwrap(), [5, 4, 3, 2, 1, 0], "taken in the queue's order");
        assert_eq!((opened.get(), most.get()), (3, 3), "one session per worker, three at a time");
        assert_eq!(done.len(), 6);
        assert_eq!(done.first().map(|d| d.1), Some(3), "outcomes in the order the jobs finished: {done:?}");
    }

    #[tokio::test]
    async fn a_worker_without_a_job_opens_nothing() {
        let opened = Cell::new(0);
        let open = async || {
            opened.set(opened.get() + 1);
            Ok(())
        };
        each(Vec::<u8>::new(), 4, open, async |_: &(), _| Ok(())).await.unwrap();
        assert_eq!(opened.get(), 0);
        each([1u8], 4, open, async |_: &(), _| Ok(())).await.unwrap();
        assert_eq!(opened.get(), 1, "one job, one session");
    }

    #[tokio::test]
    async fn the_first_error_stops_the_other_workers() {
        let started = Mutex::new(Vec::new());
        let err = each(
            0..100u64,
            2,
            async || Ok(()),
            async |_: &(), job: u64| {
                started.lock().unwrap().push(job);
                if job == 1 {
                    return Err(Error::new(ErrorKind::Server, "job 1 failed"));
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.message, "job 1 failed");
        assert_eq!(started.into_inner().unwrap(), [0, 1], "no job starts after the error, the waiting one is dropped");
    }
}

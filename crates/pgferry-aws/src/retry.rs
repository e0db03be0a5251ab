//! Pacing: retrying throttled calls, and how often and how long to poll.
//!
//! The SDK's retries are off (see [`crate::sdk`]); this is the one retry policy.
//! Only throttling is retried, with a bounded exponential backoff
//! (<https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html>):
//! any other error stops the step, and since every step is journaled and
//! resumable, the operator's rerun is the retry for those.

use std::future::Future;
use std::time::Duration;

use pgferry::{Error, ErrorKind, Result};

use crate::control::{CloudError, CloudResult};

/// How pgferry paces its calls to AWS.
#[derive(Clone, Debug)]
pub struct Pacing {
    /// Attempts of a throttled call, the first included.
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Between two looks at a resource that is not ready yet.
    pub poll: Duration,
    /// The longest wait for one resource (a snapshot copy of a large instance takes hours).
    pub timeout: Duration,
}

impl Pacing {
    /// For AWS: RDS changes take minutes to hours.
    pub fn aws() -> Pacing {
        Pacing {
            attempts: 8,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
            poll: Duration::from_secs(15),
            timeout: Duration::from_secs(12 * 3600),
        }
    }

    /// For tests: the same shape, in milliseconds.
    pub fn quick() -> Pacing {
        Pacing {
            attempts: 4,
            first_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            poll: Duration::from_millis(1),
            timeout: Duration::from_secs(10),
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.first_backoff.saturating_mul(1 << attempt.min(16)).min(self.max_backoff)
    }
}

/// Runs one call, retrying while AWS throttles it.
pub async fn call<T, F, Fut>(pacing: &Pacing, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = CloudResult<T>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(err) if err.is_throttling() && tries + 1 < pacing.attempts => {
                let pause = pacing.backoff(tries);
                tracing::info!(action = err.action, ?pause, "throttled; retrying");
                tokio::time::sleep(pause).await;
                tries += 1;
            }
            Err(err) => return Err(to_error(err)),
        }
    }
}

/// A cloud error as the operator reads it: what failed, and what to do.
pub fn to_error(err: CloudError) -> Error {
    if err.is_access_denied() {
        return Error::new(ErrorKind::Precondition, format!("{} was denied: {}", err.action, err.message)).with_hint(
            format!(
                "allow {} for the identity pgferry runs as; docs/aws.md lists every action pgferry needs",
                err.action
            ),
        );
    }
    if err.is_throttling() {
        return Error::new(ErrorKind::Server, format!("{err} (still throttled after retries)"))
            .with_hint("AWS is rate-limiting this account; rerun later: the run resumes where it stopped");
    }
    if err.code.is_none() {
        return Error::new(ErrorKind::Connection, err.to_string()).with_hint(
            "check the network, the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID) and AWS_REGION; a rerun resumes",
        );
    }
    Error::new(ErrorKind::Server, err.to_string())
        .with_hint("fix the cause and rerun: the run resumes where it stopped")
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[tokio::test]
    async fn throttling_is_retried_then_reported() {
        let pacing = Pacing::quick();
        let calls = Cell::new(0);
        let throttled = || CloudError::new("rds:DescribeDBInstances", Some("Throttling"), "Rate exceeded");
        let out = call(&pacing, || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 3 {
                    Err(throttled())
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(out.unwrap(), 3);

        calls.set(0);
        let err = call(&pacing, || {
            calls.set(calls.get() + 1);
            async { Err::<(), _>(throttled()) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls.get(), pacing.attempts);
        assert_eq!(err.kind, ErrorKind::Server);
        assert!(err.message.contains("still throttled"), "{}", err.message);
    }

    #[tokio::test]
    async fn other_errors_are_not_retried_and_access_denied_names_the_action() {
        let calls = Cell::new(0);
        let err = call(&Pacing::quick(), || {
            calls.set(calls.get() + 1);
            async { Err::<(), _>(CloudError::new("rds:CopyDBSnapshot", Some("AccessDenied"), "not authorized")) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls.get(), 1);
        assert_eq!(err.kind, ErrorKind::Precondition);
        assert!(err.hint.unwrap().contains("allow rds:CopyDBSnapshot"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let pacing = Pacing::aws();
        assert_eq!(pacing.backoff(0), Duration::from_millis(500));
        assert_eq!(pacing.backoff(2), Duration::from_secs(2));
        assert_eq!(pacing.backoff(30), Duration::from_secs(20));
    }
}

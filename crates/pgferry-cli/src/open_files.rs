//! The open-files limit, raised at start from its soft value to its hard one.
//!
//! Change capture holds one spool file open for every transaction the source
//! is streaming at once (`pgferry::apply`'s streamed transactions), besides its
//! connections: under a soft limit of 1,024 (a common default) a source with
//! about a thousand large transactions in progress together would stop it,
//! and every rerun, until they end. The hard limit is the operator's ceiling,
//! and raising the soft one up to it needs no privilege (Go's runtime does the
//! same for every program); where even that is too low, the error says so.
//! See [getrlimit(2)](https://man7.org/linux/man-pages/man2/getrlimit.2.html).

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Raises the soft limit of open files to the hard limit; a failure is only
/// logged (pgferry runs on, under the limit it was given).
pub(crate) fn raise_limit() {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::debug!("the open-files limit stays at {soft} (raising it to {hard}: {e})");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::debug!("the open-files limit could not be read: {e}"),
    }
}

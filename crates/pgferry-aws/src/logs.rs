//! Where the restored instance's recovery ended, read from its PostgreSQL log.
//!
//! A restore from a snapshot starts PostgreSQL on the snapshot's volume, which
//! replays the write-ahead log up to a point and logs it:
//! `LOG:  redo done at 0/3000148 system usage: ...`. That position is where the
//! target's data stops; replication from the slot made before the snapshot
//! resumes from it. RDS gives no shell, so the log comes through the RDS API:
//! `DescribeDBLogFiles`, then `DownloadDBLogFilePortion` page by page
//! (<https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DownloadDBLogFilePortion.html>).

use pgferry::{Error, ErrorKind, Result};
use pgferry_core::seed::redo_done_at;
use pgferry_pgoutput::Lsn;

use crate::control::ControlPlane;
use crate::retry::{call, Pacing};

/// The most pages read from one file; a marker that never ends is a fault.
const MAX_PAGES: usize = 100_000;

/// Downloads one log file whole.
pub async fn download<C: ControlPlane>(cloud: &C, pacing: &Pacing, instance: &str, file: &str) -> Result<String> {
    let mut text = String::new();
    let mut marker = "0".to_owned();
    for _ in 0..MAX_PAGES {
        let page = call(pacing, || cloud.download_log_portion(instance, file, &marker)).await?;
        text.push_str(&page.data);
        match page.marker {
            Some(next) if page.pending && next != marker => marker = next,
            _ => return Ok(text),
        }
    }
    Err(Error::new(ErrorKind::Server, format!("the log file {file} of {instance} did not end after {MAX_PAGES} pages")))
}

/// Finds the restored instance's `redo done at` position, newest log file first.
pub async fn redo_done<C: ControlPlane>(cloud: &C, pacing: &Pacing, instance: &str) -> Result<(Lsn, String)> {
    let mut files = call(pacing, || cloud.list_log_files(instance)).await?;
    files.sort_by(|a, b| b.last_written.cmp(&a.last_written).then_with(|| b.name.cmp(&a.name)));
    for file in files.iter().filter(|f| f.name.contains("postgresql.log")) {
        let text = download(cloud, pacing, instance, &file.name).await?;
        if let Some(lsn) = redo_done_at(&text) {
            tracing::info!(%instance, file = %file.name, %lsn, "found where recovery ended");
            return Ok((lsn, file.name.clone()));
        }
    }
    Err(Error::new(
        ErrorKind::Precondition,
        format!("no \"redo done at\" line in the {} PostgreSQL log files of {instance}", files.len()),
    )
    .with_hint("the restored instance's first start logs it; if the logs were rotated away, restore again (delete the target and rerun)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rds_log_lines_give_the_last_redo_position() {
        let log = "\
2026-11-28 05:00:01 UTC::@:[401]:LOG:  database system was interrupted; last known up at 2026-11-28 04:58:00 UTC
2026-11-28 05:00:02 UTC::@:[401]:LOG:  redo starts at 0/2000028
2026-11-28 05:00:03 UTC::@:[401]:LOG:  redo done at 0/3000148 system usage: CPU: user: 0.00 s, system: 0.00 s, elapsed: 0.01 s
2026-11-28 05:09:03 UTC::@:[402]:LOG:  redo done at 1A/FF00D0
2026-11-28 05:09:04 UTC::@:[402]:LOG:  database system is ready to accept connections
";
        assert_eq!(redo_done_at(log), Some(Lsn(0x1A_00FF_00D0)));
        assert_eq!(redo_done_at(&log[..log.find("2026-11-28 05:09:03").unwrap()]), Some(Lsn(0x300_0148)));
        assert_eq!(redo_done_at("LOG:  redo is not required\n"), None);
        assert_eq!(redo_done_at("LOG:  redo done at garbage\n"), None);
    }
}

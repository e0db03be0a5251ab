//! Transactions the source streams while they are still in progress
//! (pgoutput protocol version 2 and later, `streaming 'on'`: see
//! [Logical Streaming Replication Protocol](https://www.postgresql.org/docs/current/protocol-logical-replication.html)
//! and the Stream messages of
//! [Message Formats](https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html)).
//!
//! Once a transaction's changes pass the source's `logical_decoding_work_mem`,
//! the walsender sends them in blocks (Stream Start … Stream Stop), blocks of
//! different transactions interleave with each other and with whole
//! transactions, and the transaction ends later with a Stream Commit or a
//! Stream Abort. Without streaming the walsender holds such a transaction on
//! its disk until the commit and then sends it whole.
//!
//! Here each streamed transaction's messages are spooled, as they arrive, to a
//! file of its own: an unnamed temporary file, gone with the process however
//! it ends, so memory stays bounded by the write buffer whatever the
//! transaction's size. At the Stream Commit the spool is read back and applied
//! as one source transaction through the same path as a whole one (its batch
//! commits with the progress row at the commit's end, so nothing is applied
//! twice), then dropped. This is what PostgreSQL's own apply worker does
//! without `streaming = parallel`.
//!
//! A Stream Abort of the whole transaction drops its spool. One of a
//! subtransaction (`ROLLBACK TO SAVEPOINT`, an exception block) cuts the spool
//! back to where that subtransaction's first change was written: while a
//! subtransaction is open, every change belongs to it or to its descendants,
//! so everything after its first change goes with it (PostgreSQL's apply worker
//! relies on the same, `subxact_info_add` in its `worker.c`).
//!
//! Nothing of a streamed transaction is applied or acknowledged before its
//! commit: the position told to the source as flushed is that of committed
//! batches (or of a keepalive between transactions, which the source sends
//! only below the commit of any transaction still open), so after a crash,
//! with the spool lost, the source streams the transaction again from its
//! first change.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use bytes::Bytes;
use pgferry_pgoutput::{StreamAbort, StreamStart, Xid};

use super::Stop;
use crate::error::{Error, ErrorKind};

/// The write buffer of each spool.
const BUFFER: usize = 64 * 1024;
/// The tag of pgoutput's Origin message.
const ORIGIN: u8 = b'O';

/// The streamed transactions of one replication session that have neither
/// committed nor aborted yet.
#[derive(Default)]
pub(crate) struct Streamed {
    open: HashMap<Xid, Spool>,
    /// The transaction of the stream block being received.
    block: Option<Xid>,
    /// A stream block arrived in this session.
    seen_block: bool,
}

/// One transaction's spooled messages: each a 4-byte length, then the bytes.
struct Spool {
    file: BufWriter<File>,
    len: u64,
    /// Subtransactions in the order of their first change, with where it was
    /// written ([`Streamed::abort`]).
    subxacts: Vec<(Xid, u64)>,
    index: HashMap<Xid, usize>,
}

impl Streamed {
    /// Whether a stream block arrived in this session.
    pub(crate) fn seen_block(&self) -> bool {
        self.seen_block
    }

    /// Stream Start: the messages up to the next Stream Stop belong to `start.xid`.
    pub(crate) fn start(&mut self, start: &StreamStart) -> Result<(), Stop> {
        self.seen_block = true;
        if start.first_segment {
            let spool = Spool::new().map_err(|e| match e.raw_os_error() {
                Some(code) if code == nix::errno::Errno::EMFILE as i32 => too_many_open(self.open.len(), e),
                _ => disk("creating a spool file", e),
            })?;
            self.open.insert(start.xid, spool);
        } else if !self.open.contains_key(&start.xid) {
            return Err(protocol(format!(
                "the source streamed a later block of transaction {} whose first block this session never received",
                start.xid
            )));
        }
        self.block = Some(start.xid);
        Ok(())
    }

    /// Stream Stop.
    pub(crate) fn stop(&mut self) {
        self.block = None;
    }

    /// A message of the open stream block, as received (change messages carry
    /// the xid of the (sub)transaction that made them after their tag).
    pub(crate) fn spool(&mut self, data: &[u8]) -> Result<(), Stop> {
        let Some(xid) = self.block else {
            return Err(protocol("the source sent a streamed message outside a stream block".into()));
        };
        let Some(spool) = self.open.get_mut(&xid) else {
            return Err(protocol(format!("no spool is open for streamed transaction {xid}")));
        };
        // An Origin message (sent after the Stream Start of a transaction
        // replayed from another node) is the one without an xid.
        if data.first() != Some(&ORIGIN) {
            let subxid = match data.get(1..5) {
                Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                None => return Err(protocol(format!("a streamed message of {} bytes has no xid", data.len()))),
            };
            if subxid != xid && !spool.index.contains_key(&subxid) {
                spool.index.insert(subxid, spool.subxacts.len());
                spool.subxacts.push((subxid, spool.len));
            }
        }
        spool.append(data)
    }

    /// Stream Abort: of the whole transaction (its spool is dropped), or of a
    /// subtransaction (its changes and its descendants' are cut off).
    pub(crate) fn abort(&mut self, abort: &StreamAbort) -> Result<(), Stop> {
        if abort.subxid == abort.xid {
            self.open.remove(&abort.xid);
            return Ok(());
        }
        let Some(spool) = self.open.get_mut(&abort.xid) else { return Ok(()) };
        // A subtransaction that wrote nothing left nothing to cut.
        let Some(&at) = spool.index.get(&abort.subxid) else { return Ok(()) };
        let offset = spool.subxacts[at].1;
        for (subxid, _) in spool.subxacts.drain(at..) {
            spool.index.remove(&subxid);
        }
        spool.truncate(offset)
    }

    /// Stream Commit: the transaction's messages, in the order they arrived.
    pub(crate) fn commit(&mut self, xid: Xid) -> Result<Replay, Stop> {
        let spool = self.open.remove(&xid).ok_or_else(|| {
            protocol(format!("the source committed streamed transaction {xid}, which this session never received"))
        })?;
        spool.replay()
    }
}

impl Spool {
    fn new() -> std::io::Result<Spool> {
        let file = tempfile::tempfile()?;
        Ok(Spool { file: BufWriter::with_capacity(BUFFER, file), len: 0, subxacts: Vec::new(), index: HashMap::new() })
    }

    fn append(&mut self, data: &[u8]) -> Result<(), Stop> {
        let len = u32::try_from(data.len())
            .map_err(|_| protocol(format!("a streamed message of {} bytes is too large", data.len())))?;
        self.file.write_all(&len.to_be_bytes()).map_err(|e| disk("writing a spool file", e))?;
        self.file.write_all(data).map_err(|e| disk("writing a spool file", e))?;
        self.len += 4 + u64::from(len);
        Ok(())
    }

    fn truncate(&mut self, offset: u64) -> Result<(), Stop> {
        let mut cut = || {
            self.file.flush()?;
            let file = self.file.get_mut();
            file.set_len(offset)?;
            file.seek(SeekFrom::Start(offset))
        };
        cut().map_err(|e| disk("cutting a spool file back", e))?;
        self.len = offset;
        Ok(())
    }

    fn replay(self) -> Result<Replay, Stop> {
        let mut file = self.file.into_inner().map_err(|e| disk("writing a spool file", e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(|e| disk("reading a spool file", e))?;
        Ok(Replay { file: BufReader::with_capacity(BUFFER, file), bytes: self.len })
    }
}

/// A committed streamed transaction's messages, read back from its spool.
pub(crate) struct Replay {
    file: BufReader<File>,
    /// The spool's size.
    pub(crate) bytes: u64,
}

impl Replay {
    /// The next message; `None` after the last.
    pub(crate) fn next_message(&mut self) -> Result<Option<Bytes>, Stop> {
        let mut len = [0u8; 4];
        match self.file.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(disk("reading a spool file", e)),
        }
        let mut data = vec![0u8; u32::from_be_bytes(len) as usize];
        self.file.read_exact(&mut data).map_err(|e| disk("reading a spool file", e))?;
        Ok(Some(Bytes::from(data)))
    }
}

fn protocol(message: String) -> Stop {
    Stop::Fatal(Error::new(ErrorKind::Server, message))
}

/// No file descriptor is left for one more streamed transaction's spool.
fn too_many_open(open: usize, e: std::io::Error) -> Stop {
    Stop::Fatal(
        Error::new(
            ErrorKind::Precondition,
            format!("creating a spool file for a transaction the source streams, with {open} others open: {e}"),
        )
        .with_hint("each transaction the source streams holds an open file until it commits or aborts: raise pgferry's open-files limit (ulimit -n, LimitNOFILE= in a systemd unit; pgferry raises its soft limit to the hard one itself), then rerun pgferry follow (the source streams them again)"),
    )
}

/// A spool file could not be made, written or read: the directory is named,
/// since it is the operator's to fix (missing, not writable, full).
fn disk(doing: &str, e: std::io::Error) -> Stop {
    let dir = std::env::temp_dir();
    Stop::Fatal(
        Error::new(
            ErrorKind::Precondition,
            format!("{doing} in {} for a transaction the source streams: {e}", dir.display()),
        )
        .with_hint("a streamed transaction is spooled to the temporary directory (TMPDIR) until it commits: make it exist and writable with room there, or point TMPDIR at a larger disk, then rerun pgferry follow (the source streams it again)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(xid: Xid, first_segment: bool) -> StreamStart {
        StreamStart { xid, first_segment }
    }

    fn change(xid: Xid, n: u8) -> Vec<u8> {
        let mut data = vec![b'I'];
        data.extend(xid.to_be_bytes());
        data.push(n);
        data
    }

    fn replayed(streamed: &mut Streamed, xid: Xid) -> Vec<Vec<u8>> {
        let mut replay = streamed.commit(xid).ok().unwrap();
        let mut out = Vec::new();
        while let Some(m) = replay.next_message().ok().unwrap() {
            out.push(m.to_vec());
        }
        out
    }

    #[test]
    fn interleaved_transactions_replay_their_own_messages_in_order() {
        let mut s = Streamed::default();
        s.start(&start(10, true)).ok().unwrap();
        s.spool(&change(10, 1)).ok().unwrap();
        s.stop();
        s.start(&start(20, true)).ok().unwrap();
        s.spool(&change(20, 2)).ok().unwrap();
        s.stop();
        s.start(&start(10, false)).ok().unwrap();
        s.spool(&change(10, 3)).ok().unwrap();
        s.stop();
        assert_eq!(replayed(&mut s, 10), vec![change(10, 1), change(10, 3)]);
        assert_eq!(replayed(&mut s, 20), vec![change(20, 2)]);
        assert!(s.commit(10).is_err(), "a committed transaction's spool is gone");
    }

    #[test]
    fn a_subtransaction_abort_cuts_it_and_its_descendants_only() {
        let mut s = Streamed::default();
        s.start(&start(10, true)).ok().unwrap();
        let origin = b"O\x00\x00\x00\x0b\x00\x00\x00\x00node\x00".to_vec();
        s.spool(&origin).ok().unwrap(); // no xid: not taken for subtransaction 11
        s.spool(&change(10, 1)).ok().unwrap();
        s.spool(&change(11, 2)).ok().unwrap(); // subxact 11
        s.spool(&change(12, 3)).ok().unwrap(); // 12, child of 11
        s.spool(&change(11, 4)).ok().unwrap();
        s.abort(&StreamAbort { xid: 10, subxid: 11, parallel: None }).ok().unwrap();
        s.spool(&change(13, 5)).ok().unwrap(); // a new one after the cut
        s.spool(&change(10, 6)).ok().unwrap();
        // One that wrote nothing changes nothing.
        s.abort(&StreamAbort { xid: 10, subxid: 99, parallel: None }).ok().unwrap();
        s.stop();
        assert_eq!(replayed(&mut s, 10), vec![origin, change(10, 1), change(13, 5), change(10, 6)]);
    }

    #[test]
    fn a_whole_abort_drops_the_spool_and_a_later_block_without_a_first_is_refused() {
        let mut s = Streamed::default();
        s.start(&start(10, true)).ok().unwrap();
        s.spool(&change(10, 1)).ok().unwrap();
        s.stop();
        s.abort(&StreamAbort { xid: 10, subxid: 10, parallel: None }).ok().unwrap();
        assert!(s.commit(10).is_err());
        assert!(s.start(&start(10, false)).is_err());
        assert!(s.spool(&change(10, 1)).is_err(), "no block is open");
    }
}

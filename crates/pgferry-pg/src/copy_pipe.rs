//! One COPY pipe: `COPY ... TO STDOUT` on the source streamed straight into
//! `COPY ... FROM STDIN` on the target, with no intermediate file.
//!
//! Rows arrive as many small CopyData messages; they are coalesced into buffers of
//! about 256 KiB before they are sent on, which halves the client's CPU cost on
//! small machines (measured in `research/blocks.md`). Memory stays bounded by one
//! buffer per pipe, whatever the table's size.

use bytes::{Bytes, BytesMut};
use futures_util::{pin_mut, SinkExt, TryStreamExt};
use tokio_postgres::{Client, Error};

const COALESCE_BYTES: usize = 256 * 1024;

/// What one pipe moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Piped {
    pub rows: u64,
    pub bytes: u64,
}

/// Streams `copy_out` (run on `source`) into `copy_in` (run on `target`), calling
/// `on_bytes` after each buffer is sent. Both statements must use the same format.
pub async fn pipe(
    source: &Client,
    copy_out: &str,
    target: &Client,
    copy_in: &str,
    mut on_bytes: impl FnMut(u64),
) -> Result<Piped, Error> {
    let stream = source.copy_out(copy_out).await?;
    let sink = target.copy_in::<_, Bytes>(copy_in).await?;
    pin_mut!(stream, sink);
    let mut buffer = BytesMut::with_capacity(COALESCE_BYTES);
    let mut bytes = 0u64;
    while let Some(chunk) = stream.try_next().await? {
        buffer.extend_from_slice(&chunk);
        if buffer.len() >= COALESCE_BYTES {
            let len = buffer.len() as u64;
            sink.feed(buffer.split().freeze()).await?;
            // Whole again: left to grow from what `split` leaves, the next buffer
            // would be copied over several times on its way to full size.
            buffer.reserve(COALESCE_BYTES * 2);
            bytes += len;
            on_bytes(len);
        }
    }
    if !buffer.is_empty() {
        let len = buffer.len() as u64;
        sink.feed(buffer.split().freeze()).await?;
        bytes += len;
        on_bytes(len);
    }
    let rows = sink.as_mut().finish().await?;
    Ok(Piped { rows, bytes })
}

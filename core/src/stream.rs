//! Byte streams for bodies too large to hold in memory at once.

use std::pin::Pin;

use bytes::Bytes;
use futures_core::Stream;

/// A stream of body chunks. Errors are I/O errors so that any transport can produce one.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send + 'static>>;

/// A stream that yields `bytes` in chunks of at most `chunk` bytes (no copy: chunks are
/// slices of the same buffer).
pub fn chunked(bytes: Bytes, chunk: usize) -> ByteStream {
    let chunk = chunk.max(1);
    let mut offset = 0;
    Box::pin(futures_util::stream::iter(std::iter::from_fn(move || {
        if offset >= bytes.len() {
            return None;
        }
        let end = (offset + chunk).min(bytes.len());
        let piece = bytes.slice(offset..end);
        offset = end;
        Some(Ok(piece))
    })))
}

/// A stream yielding `bytes` as a single chunk.
pub fn once(bytes: Bytes) -> ByteStream {
    Box::pin(futures_util::stream::iter(std::iter::once(Ok(bytes))))
}

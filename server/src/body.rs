//! Request bodies: read whole with a cap, or streamed to a store.
//!
//! When a request is refused before its body was read (a value over the limit), the rest of
//! the body is still read and discarded, up to [`DRAIN_LIMIT`] bytes, so that the client
//! receives the error response instead of a reset connection.

use std::time::Duration;

use axum::body::Body;
use bindery_core::ByteStream;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::errors::ServerError;

/// Bytes of a refused body that are read and discarded before answering.
pub const DRAIN_LIMIT: u64 = 256 * 1024 * 1024;

/// How long a refused request may take to drain its body.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads the whole body, refusing more than `limit` bytes.
///
/// # Errors
///
/// [`ServerError::BodyTooLarge`] past the limit (after draining the rest),
/// [`ServerError::BadBody`] if the connection fails.
pub async fn read_capped(body: Body, limit: usize) -> Result<Bytes, ServerError> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    let mut seen: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ServerError::BadBody {
            reason: format!("reading the body failed: {e}"),
        })?;
        seen += chunk.len() as u64;
        if seen > limit as u64 {
            // Drain the rest so that the client reads the answer.
            let drain = async {
                while let Some(Ok(c)) = stream.next().await {
                    seen += c.len() as u64;
                    if seen > DRAIN_LIMIT {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
            return Err(ServerError::BodyTooLarge {
                len: seen,
                limit: limit as u64,
            });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// A body handed to a store as a stream, with the task that feeds it.
pub struct Streamed {
    /// The body's chunks, for the store.
    pub stream: ByteStream,
    /// Completes when the body has been read to its end (or draining gave up).
    pub drain: Drain,
}

/// The feeding task of a [`Streamed`] body.
pub struct Drain(tokio::task::JoinHandle<()>);

impl Drain {
    /// Waits (bounded) until the rest of the body was read, so that an error response
    /// reaches the client. Call it after a store refused the body.
    pub async fn finish(self) {
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, self.0).await;
    }
}

/// Streams `body` to a consumer; when the consumer stops early, the rest is discarded.
pub fn streamed(body: Body) -> Streamed {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
    let task = tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let mut forwarding = true;
        let mut drained: u64 = 0;
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) if forwarding => {
                    let len = chunk.len() as u64;
                    if tx.send(Ok(chunk)).await.is_err() {
                        forwarding = false;
                        drained += len;
                    }
                }
                Ok(chunk) => {
                    drained += chunk.len() as u64;
                    if drained > DRAIN_LIMIT {
                        break;
                    }
                }
                Err(e) => {
                    if forwarding {
                        let _ = tx.send(Err(std::io::Error::other(e))).await;
                    }
                    break;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Streamed {
        stream: Box::pin(stream),
        drain: Drain(task),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_capped_refuses_a_body_over_the_limit_and_reports_its_size() {
        let err = read_capped(Body::from(vec![0u8; 11]), 10)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            ServerError::BodyTooLarge { len: 11, limit: 10 }
        ));
        let ok = read_capped(Body::from(vec![1u8; 10]), 10).await.unwrap();
        assert_eq!(ok.len(), 10);
    }

    #[tokio::test]
    async fn streamed_bodies_arrive_whole() {
        let s = streamed(Body::from(vec![7u8; 100_000]));
        let chunks: Vec<_> = s.stream.collect().await;
        let total: usize = chunks.iter().map(|c| c.as_ref().unwrap().len()).sum();
        assert_eq!(total, 100_000);
    }
}

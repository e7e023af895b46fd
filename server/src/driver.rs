//! A client of Bindery's driver Worker (see `driver.js`), which turns HTTP calls into
//! `queue()` and `scheduled()` events of the consumer Worker.
//!
//! The client speaks plain HTTP/1.1 with `Connection: close` to a loopback address: one
//! request per event, so no pool is needed.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a call to the driver failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The driver could not be reached or the connection failed.
    #[error("driver Worker at {addr} unreachable: {source}")]
    Unreachable {
        /// Its address.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The driver did not answer in time.
    #[error("driver Worker at {addr} did not answer within {secs} s")]
    Timeout {
        /// Its address.
        addr: String,
        /// The timeout.
        secs: u64,
    },
    /// The driver answered with an error or something that is not JSON.
    #[error("driver Worker answered {status}: {body}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The body (truncated).
        body: String,
    },
}

/// Calls the driver Worker.
#[derive(Debug, Clone)]
pub struct DriverClient {
    addr: String,
    token: Option<String>,
}

impl DriverClient {
    /// A client of the driver listening on `addr` (`host:port`), sending `token` if given.
    pub fn new(addr: impl Into<String>, token: Option<String>) -> Self {
        let addr = addr.into();
        let addr = addr
            .strip_prefix("http://")
            .unwrap_or(&addr)
            .trim_end_matches('/')
            .to_owned();
        Self { addr, token }
    }

    /// The driver's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// POSTs `body` as JSON to `path` and returns the JSON answer.
    ///
    /// # Errors
    ///
    /// Any [`DriverError`].
    pub async fn post_json(
        &self,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value, DriverError> {
        match tokio::time::timeout(timeout, self.exchange(path, body)).await {
            Ok(r) => r,
            Err(_) => Err(DriverError::Timeout {
                addr: self.addr.clone(),
                secs: timeout.as_secs(),
            }),
        }
    }

    async fn exchange(&self, path: &str, body: &Value) -> Result<Value, DriverError> {
        let io = |source| DriverError::Unreachable {
            addr: self.addr.clone(),
            source,
        };
        let payload = body.to_string();
        let mut stream = TcpStream::connect(&self.addr).await.map_err(io)?;
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.addr,
            payload.len()
        );
        if let Some(t) = &self.token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.map_err(io)?;
        stream.write_all(payload.as_bytes()).await.map_err(io)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.map_err(io)?;
        let (status, body) = parse_response(&raw).map_err(|e| io(std::io::Error::other(e)))?;
        if status != 200 {
            return Err(DriverError::Refused {
                status,
                body: String::from_utf8_lossy(&body).chars().take(500).collect(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| DriverError::Refused {
            status,
            body: format!("not JSON ({e}): {}", String::from_utf8_lossy(&body)),
        })
    }
}

/// Splits an HTTP/1.1 response into its status and (de-chunked) body.
fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the response has no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("the response has no status")?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let mut rest = &raw[end + 4..];
    if !chunked {
        return Ok((status, rest.to_vec()));
    }
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok((status, out));
        }
        if rest.len() < size {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[(size + 2).min(rest.len())..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_and_plain_responses_parse() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain).unwrap(), (200, b"{}".to_vec()));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked).unwrap(),
            (200, b"{\"a\":1}".to_vec())
        );
    }
}

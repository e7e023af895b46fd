//! Opaque list cursors.
//!
//! A cursor names the last key a page looked at, so the next page starts strictly after it:
//! keys written or deleted in between cannot make a page repeat or skip a key that existed
//! throughout. The cursor is authenticated with the namespace's secret and bound to the
//! prefix, so a forged, truncated or foreign cursor is an error, not a silent restart.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bindery_core::kv::{KvError, KvResult};
use md5::{Digest, Md5};

const VERSION: u8 = 1;
const MAC_LEN: usize = 8;

fn mac(secret: &[u8; 16], prefix: &str, last: &[u8]) -> [u8; MAC_LEN] {
    let mut h = Md5::new();
    h.update(secret);
    h.update((prefix.len() as u32).to_le_bytes());
    h.update(prefix.as_bytes());
    h.update(last);
    let d = h.finalize();
    let mut out = [0; MAC_LEN];
    out.copy_from_slice(&d[..MAC_LEN]);
    out
}

/// The cursor that continues after `last` under `prefix`.
pub(crate) fn encode(secret: &[u8; 16], prefix: &str, last: &str) -> String {
    let mut raw = Vec::with_capacity(1 + MAC_LEN + last.len());
    raw.push(VERSION);
    raw.extend_from_slice(&mac(secret, prefix, last.as_bytes()));
    raw.extend_from_slice(last.as_bytes());
    URL_SAFE_NO_PAD.encode(raw)
}

/// The key a cursor continues after.
pub(crate) fn decode(secret: &[u8; 16], prefix: &str, cursor: &str) -> KvResult<String> {
    let raw = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| KvError::InvalidCursor {
            reason: "not a cursor returned by list",
        })?;
    if raw.len() < 1 + MAC_LEN || raw[0] != VERSION {
        return Err(KvError::InvalidCursor {
            reason: "not a cursor returned by list",
        });
    }
    let (tag, last) = raw[1..].split_at(MAC_LEN);
    if tag != mac(secret, prefix, last) {
        return Err(KvError::InvalidCursor {
            reason: "cursor was issued for another namespace or prefix, or was altered",
        });
    }
    String::from_utf8(last.to_vec()).map_err(|_| KvError::InvalidCursor {
        reason: "not a cursor returned by list",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_another_prefix_or_secret() {
        let s = [7u8; 16];
        let c = encode(&s, "p/", "p/key");
        assert_eq!(decode(&s, "p/", &c).unwrap(), "p/key");
        assert!(decode(&s, "q/", &c).is_err());
        assert!(decode(&[8u8; 16], "p/", &c).is_err());
        assert!(decode(&s, "p/", "garbage!").is_err());
        assert!(decode(&s, "p/", "").is_err());
    }
}

//! The storage engine boundary: what a KV backend must do, below validation and caching.
//!
//! Engines are synchronous. Reads may run on any thread; writes arrive only from the
//! committer thread ([`crate::committer`]) in batches that must be applied atomically and
//! durably.

use bindery_core::kv::KvResult;
use bytes::Bytes;

/// One stored value with what KV keeps beside it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub value: Bytes,
    /// Metadata as JSON text, already validated.
    pub metadata: Option<String>,
    /// Expiration, seconds since the UNIX epoch.
    pub expiration: Option<u64>,
}

impl Record {
    /// Whether the record is expired at `now_secs`.
    pub fn expired_at(&self, now_secs: u64) -> bool {
        self.expiration.is_some_and(|e| e <= now_secs)
    }

    /// Encodes as `[version][flags][expiration u64][meta len u32][meta][value]`.
    pub fn encode(&self) -> Vec<u8> {
        let meta = self.metadata.as_deref().unwrap_or("").as_bytes();
        let mut out = Vec::with_capacity(14 + meta.len() + self.value.len());
        out.push(1);
        let flags = u8::from(self.expiration.is_some()) | (u8::from(self.metadata.is_some()) << 1);
        out.push(flags);
        out.extend_from_slice(&self.expiration.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        out.extend_from_slice(meta);
        out.extend_from_slice(&self.value);
        out
    }

    /// Decodes what [`Record::encode`] wrote; `None` if the bytes are not a record.
    pub fn decode(raw: &[u8]) -> Option<Record> {
        if raw.len() < 14 || raw[0] != 1 {
            return None;
        }
        let flags = raw[1];
        let expiration = u64::from_le_bytes(raw[2..10].try_into().ok()?);
        let meta_len = u32::from_le_bytes(raw[10..14].try_into().ok()?) as usize;
        let meta = raw.get(14..14 + meta_len)?;
        let value = &raw[14 + meta_len..];
        Some(Record {
            value: Bytes::copy_from_slice(value),
            metadata: if flags & 2 != 0 {
                Some(String::from_utf8(meta.to_vec()).ok()?)
            } else {
                None
            },
            expiration: (flags & 1 != 0).then_some(expiration),
        })
    }

    /// Bytes this record costs in a cache.
    pub fn weight(&self) -> usize {
        self.value.len() + self.metadata.as_ref().map_or(0, String::len) + 64
    }
}

/// One write, as the committer hands it to the engine.
#[derive(Debug)]
pub(crate) enum Op {
    Put {
        key: String,
        record: Record,
    },
    Delete {
        key: String,
    },
    /// Remove every key whose expiration is at or before `now_secs`; at most `max` keys.
    Sweep {
        now_secs: u64,
        max: usize,
    },
}

/// A page of keys from [`Engine::scan`].
#[derive(Debug, Default)]
pub(crate) struct ScanPage {
    pub entries: Vec<(String, Record)>,
    /// Whether keys with the prefix remain after the last entry scanned.
    pub more: bool,
    /// The last key looked at (returned or skipped as expired), for the cursor.
    pub last_seen: Option<String>,
}

/// A KV storage engine.
pub(crate) trait Engine: Send + Sync + 'static {
    /// Reads whose cost is a memory lookup may run on async threads.
    fn reads_are_in_memory(&self) -> bool;

    /// The record stored under `key`, expired or not.
    fn read(&self, key: &str) -> KvResult<Option<Record>>;

    /// Up to `max` unexpired records whose keys start with `prefix` and sort after `after`,
    /// looking at no more than `budget` keys in total.
    fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: usize,
        budget: usize,
        now_secs: u64,
    ) -> KvResult<ScanPage>;

    /// Applies `ops` atomically and durably. Returns, per op, the number of keys removed by
    /// a sweep (0 for other ops).
    fn apply(&self, ops: &[Op]) -> KvResult<Vec<usize>>;

    /// A secret that authenticates this namespace's cursors, stable across reopen.
    fn cursor_secret(&self) -> [u8; 16];

    /// Number of keys stored, including expired keys not yet swept.
    fn stored_keys(&self) -> KvResult<u64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_through_its_encoding() {
        let cases = [
            Record {
                value: Bytes::from_static(b"hello"),
                metadata: Some("{\"a\":1}".into()),
                expiration: Some(42),
            },
            Record {
                value: Bytes::new(),
                metadata: None,
                expiration: None,
            },
            Record {
                value: Bytes::from_static(b"x"),
                metadata: Some(String::new()),
                expiration: Some(0),
            },
        ];
        for r in cases {
            assert_eq!(Record::decode(&r.encode()), Some(r));
        }
        assert_eq!(Record::decode(b"junk"), None);
    }
}

//! The edge-cache model: each location keeps its own read cache.
//!
//! A read served from a location's cache is fresh while `now < fetched_at + cache_ttl` (the
//! reader's `cache_ttl`, so a shorter TTL on a later read shortens the entry's life there).
//! Absent keys are cached too (negative lookups). A write updates the cache of the location
//! that made it, so that location reads its own writes; other locations see the change once
//! their entry ages out. An entry never outlives the key's own expiration: expiry is checked
//! on every hit.
//!
//! Entries carry the commit sequence they reflect, so a slow read that started before a
//! write cannot put an older value over the writer's newer one.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::engine::Record;

struct Entry {
    fetched_ms: u64,
    seq: u64,
    record: Option<Arc<Record>>,
}

/// One location's cache, bounded by the bytes of the values it holds.
pub(crate) struct EdgeCache {
    inner: RwLock<Inner>,
    capacity: usize,
}

struct Inner {
    map: HashMap<String, Entry>,
    bytes: usize,
}

/// Outcome of a cache lookup.
pub(crate) enum Lookup {
    /// Fresh entry: the key's record, or `None` for a cached miss.
    Hit(Option<Arc<Record>>),
    /// No fresh entry.
    Miss,
}

fn weight(key: &str, record: &Option<Arc<Record>>) -> usize {
    key.len() + record.as_ref().map_or(64, |r| r.weight())
}

impl EdgeCache {
    /// A cache holding at most `capacity` bytes; 0 disables caching.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: RwLock::new(Inner {
                map: HashMap::new(),
                bytes: 0,
            }),
            capacity,
        }
    }

    pub fn lookup(&self, key: &str, now_ms: u64, ttl_ms: u64) -> Lookup {
        if self.capacity == 0 {
            return Lookup::Miss;
        }
        let inner = self.inner.read();
        match inner.map.get(key) {
            Some(e) if now_ms < e.fetched_ms.saturating_add(ttl_ms) => {
                Lookup::Hit(e.record.clone())
            }
            _ => Lookup::Miss,
        }
    }

    /// Records what the engine holds for `key` as of commit `seq`, read or written at
    /// `now_ms`. Ignored if the cache already reflects a later commit.
    pub fn insert(&self, key: &str, record: Option<Arc<Record>>, now_ms: u64, seq: u64) {
        if self.capacity == 0 {
            return;
        }
        let w = weight(key, &record);
        if w > self.capacity {
            self.remove(key);
            return;
        }
        let mut inner = self.inner.write();
        if let Some(old) = inner.map.get(key) {
            if old.seq > seq {
                return;
            }
            let old_w = weight(key, &old.record);
            inner.bytes -= old_w;
        }
        inner.bytes += w;
        inner.map.insert(
            key.to_owned(),
            Entry {
                fetched_ms: now_ms,
                seq,
                record,
            },
        );
        if inner.bytes > self.capacity {
            Self::shrink(&mut inner, self.capacity / 4 * 3, key);
        }
    }

    fn remove(&self, key: &str) {
        let mut inner = self.inner.write();
        if let Some(old) = inner.map.remove(key) {
            inner.bytes -= weight(key, &old.record);
        }
    }

    /// Evicts entries (other than `keep`) until at most `target` bytes remain.
    fn shrink(inner: &mut Inner, target: usize, keep: &str) {
        let victims: Vec<String> = {
            let mut bytes = inner.bytes;
            inner
                .map
                .iter()
                .filter(|(k, _)| k.as_str() != keep)
                .take_while(|(k, e)| {
                    let go = bytes > target;
                    bytes -= weight(k, &e.record);
                    go
                })
                .map(|(k, _)| k.clone())
                .collect()
        };
        for k in victims {
            if let Some(e) = inner.map.remove(&k) {
                inner.bytes -= weight(&k, &e.record);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn rec(v: &'static [u8]) -> Option<Arc<Record>> {
        Some(Arc::new(Record {
            value: Bytes::from_static(v),
            metadata: None,
            expiration: None,
        }))
    }

    #[test]
    fn an_older_commit_never_replaces_a_newer_cached_entry() {
        let cache = EdgeCache::new(1 << 20);
        cache.insert("k", rec(b"new"), 1_000, 5);
        cache.insert("k", rec(b"old"), 1_001, 4);
        match cache.lookup("k", 1_002, 60_000) {
            Lookup::Hit(Some(r)) => assert_eq!(r.value, Bytes::from_static(b"new")),
            _ => panic!("expected the newer entry"),
        }
    }

    #[test]
    fn cache_stays_within_its_byte_capacity() {
        let cache = EdgeCache::new(10_000);
        for i in 0..1_000 {
            cache.insert(&format!("key{i}"), rec(b"0123456789"), 0, 1);
        }
        assert!(cache.inner.read().bytes <= 10_000);
    }
}

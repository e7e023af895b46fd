//! The in-memory engine: a `BTreeMap` and an expiration index. Nothing survives the process.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use bindery_core::kv::KvResult;
use parking_lot::RwLock;

use crate::engine::{Engine, Op, Record, ScanPage};

#[derive(Default)]
struct State {
    entries: BTreeMap<String, Record>,
    expirations: BTreeSet<(u64, String)>,
}

/// In-memory engine.
pub(crate) struct MemoryEngine {
    state: RwLock<State>,
    secret: [u8; 16],
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self {
            state: RwLock::new(State::default()),
            secret: rand::random(),
        }
    }
}

impl Engine for MemoryEngine {
    fn reads_are_in_memory(&self) -> bool {
        true
    }

    fn read(&self, key: &str) -> KvResult<Option<Record>> {
        Ok(self.state.read().entries.get(key).cloned())
    }

    fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: usize,
        budget: usize,
        now_secs: u64,
    ) -> KvResult<ScanPage> {
        let state = self.state.read();
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        let mut page = ScanPage::default();
        for (seen, (key, record)) in state
            .entries
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .enumerate()
        {
            if page.entries.len() == max || seen == budget {
                page.more = true;
                break;
            }
            page.last_seen = Some(key.clone());
            if !record.expired_at(now_secs) {
                page.entries.push((key.clone(), record.clone()));
            }
        }
        Ok(page)
    }

    fn apply(&self, ops: &[Op]) -> KvResult<Vec<usize>> {
        let mut state = self.state.write();
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            let mut removed = 0;
            match op {
                Op::Put { key, record } => {
                    if let Some(old) = state.entries.insert(key.clone(), record.clone())
                        && let Some(e) = old.expiration
                    {
                        state.expirations.remove(&(e, key.clone()));
                    }
                    if let Some(e) = record.expiration {
                        state.expirations.insert((e, key.clone()));
                    }
                }
                Op::Delete { key } => {
                    if let Some(old) = state.entries.remove(key)
                        && let Some(e) = old.expiration
                    {
                        state.expirations.remove(&(e, key.clone()));
                    }
                }
                Op::Sweep { now_secs, max } => {
                    let due: Vec<(u64, String)> = state
                        .expirations
                        .iter()
                        .take_while(|(e, _)| e <= now_secs)
                        .take(*max)
                        .cloned()
                        .collect();
                    for item in due {
                        state.expirations.remove(&item);
                        state.entries.remove(&item.1);
                        removed += 1;
                    }
                }
            }
            out.push(removed);
        }
        Ok(out)
    }

    fn cursor_secret(&self) -> [u8; 16] {
        self.secret
    }

    fn stored_keys(&self) -> KvResult<u64> {
        Ok(self.state.read().entries.len() as u64)
    }
}

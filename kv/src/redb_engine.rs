//! The durable engine on redb: one database file per namespace.
//!
//! Tables: `entries` (key to encoded [`Record`]), `expirations` ((expiration, key) to nothing,
//! read by the sweeper) and `meta` (the cursor secret). Every batch from the committer is one
//! write transaction committed with [`redb::Durability::Immediate`], so an acknowledged write
//! survives a process crash and a power loss.

use std::path::Path;

use bindery_core::kv::{KvError, KvResult};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

use crate::engine::{Engine, Op, Record, ScanPage};

const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
const EXPIRATIONS: TableDefinition<(u64, &str), ()> = TableDefinition::new("expirations");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// redb-backed engine.
pub(crate) struct RedbEngine {
    db: Database,
    secret: [u8; 16],
}

fn err(op: &'static str) -> impl FnOnce(redb::Error) -> KvError {
    move |e| KvError::engine(op, e)
}

impl RedbEngine {
    pub fn open(path: &Path) -> KvResult<Self> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| KvError::engine("open", e))?;
        }
        let db = Database::create(path).map_err(|e| err("open")(e.into()))?;
        let txn = db.begin_write().map_err(|e| err("open")(e.into()))?;
        let secret = {
            txn.open_table(ENTRIES).map_err(|e| err("open")(e.into()))?;
            txn.open_table(EXPIRATIONS)
                .map_err(|e| err("open")(e.into()))?;
            let mut meta = txn.open_table(META).map_err(|e| err("open")(e.into()))?;
            let existing = meta
                .get("cursor_secret")
                .map_err(|e| err("open")(e.into()))?
                .and_then(|v| <[u8; 16]>::try_from(v.value()).ok());
            match existing {
                Some(s) => s,
                None => {
                    let s: [u8; 16] = rand::random();
                    meta.insert("cursor_secret", s.as_slice())
                        .map_err(|e| err("open")(e.into()))?;
                    s
                }
            }
        };
        txn.commit().map_err(|e| err("open")(e.into()))?;
        Ok(Self { db, secret })
    }
}

impl Engine for RedbEngine {
    fn reads_are_in_memory(&self) -> bool {
        false
    }

    fn read(&self, key: &str) -> KvResult<Option<Record>> {
        let txn = self.db.begin_read().map_err(|e| err("get")(e.into()))?;
        let table = txn.open_table(ENTRIES).map_err(|e| err("get")(e.into()))?;
        let Some(raw) = table.get(key).map_err(|e| err("get")(e.into()))? else {
            return Ok(None);
        };
        Record::decode(raw.value())
            .map(Some)
            .ok_or_else(|| KvError::engine("get", format!("corrupt record for key {key:?}")))
    }

    fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: usize,
        budget: usize,
        now_secs: u64,
    ) -> KvResult<ScanPage> {
        let txn = self.db.begin_read().map_err(|e| err("list")(e.into()))?;
        let table = txn.open_table(ENTRIES).map_err(|e| err("list")(e.into()))?;
        let range = match after {
            Some(a) if a >= prefix => table.range::<&str>(a..),
            _ => table.range::<&str>(prefix..),
        }
        .map_err(|e| err("list")(e.into()))?;
        let mut page = ScanPage::default();
        let mut seen = 0;
        for item in range {
            let (k, v) = item.map_err(|e| err("list")(e.into()))?;
            let key = k.value();
            if after == Some(key) {
                continue;
            }
            if !key.starts_with(prefix) {
                break;
            }
            if page.entries.len() == max || seen == budget {
                page.more = true;
                break;
            }
            seen += 1;
            page.last_seen = Some(key.to_owned());
            let record = Record::decode(v.value()).ok_or_else(|| {
                KvError::engine("list", format!("corrupt record for key {key:?}"))
            })?;
            if !record.expired_at(now_secs) {
                page.entries.push((key.to_owned(), record));
            }
        }
        Ok(page)
    }

    fn apply(&self, ops: &[Op]) -> KvResult<Vec<usize>> {
        let mut txn = self.db.begin_write().map_err(|e| err("commit")(e.into()))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| KvError::engine("commit", e))?;
        let mut out = Vec::with_capacity(ops.len());
        {
            let mut entries = txn
                .open_table(ENTRIES)
                .map_err(|e| err("commit")(e.into()))?;
            let mut exps = txn
                .open_table(EXPIRATIONS)
                .map_err(|e| err("commit")(e.into()))?;
            for op in ops {
                let mut removed = 0;
                match op {
                    Op::Put { key, record } => {
                        let old = entries
                            .insert(key.as_str(), record.encode().as_slice())
                            .map_err(|e| err("put")(e.into()))?
                            .and_then(|g| Record::decode(g.value()));
                        if let Some(e) = old.and_then(|o| o.expiration) {
                            exps.remove((e, key.as_str()))
                                .map_err(|e| err("put")(e.into()))?;
                        }
                        if let Some(e) = record.expiration {
                            exps.insert((e, key.as_str()), ())
                                .map_err(|e| err("put")(e.into()))?;
                        }
                    }
                    Op::Delete { key } => {
                        let old = entries
                            .remove(key.as_str())
                            .map_err(|e| err("delete")(e.into()))?
                            .and_then(|g| Record::decode(g.value()));
                        if let Some(e) = old.and_then(|o| o.expiration) {
                            exps.remove((e, key.as_str()))
                                .map_err(|e| err("delete")(e.into()))?;
                        }
                    }
                    Op::Sweep { now_secs, max } => {
                        let mut due = Vec::new();
                        for item in exps
                            .range::<(u64, &str)>(..=(*now_secs, "\u{10FFFF}\u{10FFFF}"))
                            .map_err(|e| err("sweep")(e.into()))?
                        {
                            let (k, _) = item.map_err(|e| err("sweep")(e.into()))?;
                            let (exp, key) = k.value();
                            if exp > *now_secs || due.len() == *max {
                                break;
                            }
                            due.push((exp, key.to_owned()));
                        }
                        for (exp, key) in due {
                            exps.remove((exp, key.as_str()))
                                .map_err(|e| err("sweep")(e.into()))?;
                            entries
                                .remove(key.as_str())
                                .map_err(|e| err("sweep")(e.into()))?;
                            removed += 1;
                        }
                    }
                }
                out.push(removed);
            }
        }
        txn.commit().map_err(|e| err("commit")(e.into()))?;
        Ok(out)
    }

    fn cursor_secret(&self) -> [u8; 16] {
        self.secret
    }

    fn stored_keys(&self) -> KvResult<u64> {
        let txn = self.db.begin_read().map_err(|e| err("stats")(e.into()))?;
        let table = txn
            .open_table(ENTRIES)
            .map_err(|e| err("stats")(e.into()))?;
        table.len().map_err(|e| err("stats")(e.into()))
    }
}

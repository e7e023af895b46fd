//! The durable store: one redb file per index.
//!
//! Tables: `vectors` (id -> encoded [`Record`]: the original float32 values, namespace,
//! metadata and the mutation that wrote it), `metadata_indexes` (property -> type and the
//! creating mutation), `log` (mutation -> ids it touched, kept until a graph snapshot covers
//! it) and `meta` (index configuration, last mutation and its time). Every mutation is one
//! write transaction committed with [`redb::Durability::Immediate`]: once a call returns,
//! its change survives a process crash and a power loss.

use std::path::Path;

use bindery_core::vectorize::{
    DistanceMetric, IndexConfig, Metadata, MetadataType, VectorizeError, VectorizeResult,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::{Value, json};

const VECTORS: TableDefinition<&str, &[u8]> = TableDefinition::new("vectors");
const MINDEX: TableDefinition<&str, &[u8]> = TableDefinition::new("metadata_indexes");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// One stored vector.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    /// The mutation that wrote it.
    pub seq: u64,
    pub namespace: Option<String>,
    pub values: Vec<f32>,
    pub metadata: Option<Metadata>,
}

impl Record {
    /// `[1][seq u64][ns flag u8][ns len u16][ns][dims u32][f32 LE...][metadata JSON]`.
    pub fn encode(&self) -> Vec<u8> {
        let ns = self.namespace.as_deref().unwrap_or("");
        let meta = self
            .metadata
            .as_ref()
            .and_then(|m| serde_json::to_vec(m).ok())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(16 + ns.len() + self.values.len() * 4 + meta.len());
        out.push(1);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.push(u8::from(self.namespace.is_some()));
        out.extend_from_slice(&(ns.len() as u16).to_le_bytes());
        out.extend_from_slice(ns.as_bytes());
        out.extend_from_slice(&(self.values.len() as u32).to_le_bytes());
        for v in &self.values {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&meta);
        out
    }

    /// Decodes what [`Record::encode`] wrote.
    pub fn decode(raw: &[u8]) -> Option<Record> {
        if raw.first() != Some(&1) || raw.len() < 16 {
            return None;
        }
        let seq = u64::from_le_bytes(raw[1..9].try_into().ok()?);
        let has_ns = raw[9] == 1;
        let ns_len = u16::from_le_bytes(raw[10..12].try_into().ok()?) as usize;
        let ns = std::str::from_utf8(raw.get(12..12 + ns_len)?).ok()?;
        let p = 12 + ns_len;
        let dims = u32::from_le_bytes(raw.get(p..p + 4)?.try_into().ok()?) as usize;
        let vals = raw.get(p + 4..p + 4 + dims * 4)?;
        let values = vals
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let meta = &raw[p + 4 + dims * 4..];
        let metadata = if meta.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(meta).ok()?)
        };
        Some(Record {
            seq,
            namespace: has_ns.then(|| ns.to_owned()),
            values,
            metadata,
        })
    }
}

/// A metadata index as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredMetaIndex {
    pub property: String,
    pub ty: MetadataType,
    pub created_seq: u64,
}

/// What one mutation writes.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub seq: u64,
    pub now_ms: u64,
    pub puts: Vec<(String, Record)>,
    pub deletes: Vec<String>,
    pub create_index: Option<StoredMetaIndex>,
    pub drop_index: Option<String>,
}

/// The redb store of one index.
pub(crate) struct Store {
    db: Database,
}

fn err(op: &'static str) -> impl Fn(redb::Error) -> VectorizeError {
    move |e| VectorizeError::engine(op, e)
}

macro_rules! r {
    ($op:expr, $e:expr) => {
        $e.map_err(|e| err($op)(e.into()))
    };
}

fn config_json(config: &IndexConfig, created_on_ms: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "dimensions": config.dimensions,
        "metric": config.metric.as_str(),
        "description": config.description,
        "created_on_ms": created_on_ms,
    }))
    .unwrap_or_default()
}

/// Parses an index configuration written by [`config_json`].
pub(crate) fn parse_config(raw: &[u8]) -> Option<(IndexConfig, u64)> {
    let v: Value = serde_json::from_slice(raw).ok()?;
    let config = IndexConfig {
        dimensions: v.get("dimensions")?.as_u64()? as usize,
        metric: DistanceMetric::parse(v.get("metric")?.as_str()?)?,
        description: v
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    Some((config, v.get("created_on_ms")?.as_u64()?))
}

/// The configuration file's content.
pub(crate) fn config_bytes(config: &IndexConfig, created_on_ms: u64) -> Vec<u8> {
    config_json(config, created_on_ms)
}

impl Store {
    /// Opens or creates the store; a new store records `config`.
    pub fn open(path: &Path, config: &IndexConfig, created_on_ms: u64) -> VectorizeResult<Self> {
        let db = r!("open", Database::create(path))?;
        let txn = r!("open", db.begin_write())?;
        {
            r!("open", txn.open_table(VECTORS))?;
            r!("open", txn.open_table(MINDEX))?;
            r!("open", txn.open_table(LOG))?;
            let mut meta = r!("open", txn.open_table(META))?;
            let exists = r!("open", meta.get("config"))?.is_some();
            if !exists {
                r!(
                    "open",
                    meta.insert("config", config_json(config, created_on_ms).as_slice())
                )?;
            }
        }
        r!("open", txn.commit())?;
        Ok(Self { db })
    }

    fn meta_u64(&self, key: &str) -> VectorizeResult<u64> {
        let txn = r!("read", self.db.begin_read())?;
        let t = r!("read", txn.open_table(META))?;
        Ok(r!("read", t.get(key))?
            .and_then(|v| v.value().try_into().ok().map(u64::from_le_bytes))
            .unwrap_or(0))
    }

    /// The last committed mutation (0 before the first).
    pub fn seq(&self) -> VectorizeResult<u64> {
        self.meta_u64("seq")
    }

    /// When the last mutation was committed.
    pub fn processed_ms(&self) -> VectorizeResult<u64> {
        self.meta_u64("processed_ms")
    }

    /// Commits one mutation durably.
    pub fn commit(&self, b: &Batch) -> VectorizeResult<()> {
        let mut txn = r!("commit", self.db.begin_write())?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| VectorizeError::engine("commit", e))?;
        {
            let mut vectors = r!("commit", txn.open_table(VECTORS))?;
            let mut ids: Vec<&str> = Vec::with_capacity(b.puts.len() + b.deletes.len());
            for (id, rec) in &b.puts {
                r!(
                    "commit",
                    vectors.insert(id.as_str(), rec.encode().as_slice())
                )?;
                ids.push(id);
            }
            for id in &b.deletes {
                r!("commit", vectors.remove(id.as_str()))?;
                ids.push(id);
            }
            let mut log = r!("commit", txn.open_table(LOG))?;
            let entry = serde_json::to_vec(&ids).unwrap_or_default();
            r!("commit", log.insert(b.seq, entry.as_slice()))?;
            let mut mindex = r!("commit", txn.open_table(MINDEX))?;
            if let Some(ix) = &b.create_index {
                let v = serde_json::to_vec(
                    &json!({"type": ix.ty.as_str(), "created_seq": ix.created_seq}),
                )
                .unwrap_or_default();
                r!("commit", mindex.insert(ix.property.as_str(), v.as_slice()))?;
            }
            if let Some(p) = &b.drop_index {
                r!("commit", mindex.remove(p.as_str()))?;
            }
            let mut meta = r!("commit", txn.open_table(META))?;
            r!("commit", meta.insert("seq", b.seq.to_le_bytes().as_slice()))?;
            r!(
                "commit",
                meta.insert("processed_ms", b.now_ms.to_le_bytes().as_slice())
            )?;
        }
        r!("commit", txn.commit())?;
        Ok(())
    }

    /// The record of `id`.
    pub fn get(&self, id: &str) -> VectorizeResult<Option<Record>> {
        let txn = r!("get", self.db.begin_read())?;
        let t = r!("get", txn.open_table(VECTORS))?;
        let Some(raw) = r!("get", t.get(id))? else {
            return Ok(None);
        };
        Record::decode(raw.value())
            .map(Some)
            .ok_or_else(|| VectorizeError::engine("get", format!("corrupt record for id {id:?}")))
    }

    /// Records of `ids`, in order (`None` for absent ones).
    pub fn get_many(&self, ids: &[&str]) -> VectorizeResult<Vec<Option<Record>>> {
        let txn = r!("get", self.db.begin_read())?;
        let t = r!("get", txn.open_table(VECTORS))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let rec = match r!("get", t.get(*id))? {
                None => None,
                Some(raw) => Some(Record::decode(raw.value()).ok_or_else(|| {
                    VectorizeError::engine("get", format!("corrupt record for id {id:?}"))
                })?),
            };
            out.push(rec);
        }
        Ok(out)
    }

    /// Up to `max` ids after `after`, in byte order, and whether more follow.
    pub fn ids_after(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> VectorizeResult<(Vec<String>, bool)> {
        let txn = r!("list", self.db.begin_read())?;
        let t = r!("list", txn.open_table(VECTORS))?;
        let range = match after {
            Some(a) => r!(
                "list",
                t.range::<&str>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
            )?,
            None => r!("list", t.range::<&str>(..))?,
        };
        let mut ids = Vec::new();
        for item in range {
            let (k, _) = r!("list", item)?;
            if ids.len() == max {
                return Ok((ids, true));
            }
            ids.push(k.value().to_owned());
        }
        Ok((ids, false))
    }

    /// Every record, for a full rebuild.
    pub fn for_each(&self, mut f: impl FnMut(&str, Record)) -> VectorizeResult<()> {
        let txn = r!("load", self.db.begin_read())?;
        let t = r!("load", txn.open_table(VECTORS))?;
        for item in r!("load", t.iter())? {
            let (k, v) = r!("load", item)?;
            let rec = Record::decode(v.value()).ok_or_else(|| {
                VectorizeError::engine("load", format!("corrupt record for id {:?}", k.value()))
            })?;
            f(k.value(), rec);
        }
        Ok(())
    }

    /// The ids touched by mutations after `seq`.
    pub fn log_after(&self, seq: u64) -> VectorizeResult<Vec<String>> {
        let txn = r!("load", self.db.begin_read())?;
        let t = r!("load", txn.open_table(LOG))?;
        let mut out = Vec::new();
        for item in r!("load", t.range((seq + 1)..))? {
            let (_, v) = r!("load", item)?;
            let ids: Vec<String> =
                serde_json::from_slice(v.value()).map_err(|e| VectorizeError::engine("load", e))?;
            out.extend(ids);
        }
        Ok(out)
    }

    /// Oldest log entry kept (`None` when the log is empty).
    pub fn log_first(&self) -> VectorizeResult<Option<u64>> {
        let txn = r!("load", self.db.begin_read())?;
        let t = r!("load", txn.open_table(LOG))?;
        Ok(r!("load", t.first())?.map(|(k, _)| k.value()))
    }

    /// Drops log entries up to and including `seq` (a snapshot covers them).
    pub fn truncate_log(&self, seq: u64) -> VectorizeResult<()> {
        let txn = r!("truncate", self.db.begin_write())?;
        {
            let mut t = r!("truncate", txn.open_table(LOG))?;
            r!("truncate", t.retain_in(..=seq, |_, _| false))?;
        }
        r!("truncate", txn.commit())?;
        Ok(())
    }

    /// The metadata indexes.
    pub fn metadata_indexes(&self) -> VectorizeResult<Vec<StoredMetaIndex>> {
        let txn = r!("read", self.db.begin_read())?;
        let t = r!("read", txn.open_table(MINDEX))?;
        let mut out = Vec::new();
        for item in r!("read", t.iter())? {
            let (k, v) = r!("read", item)?;
            let parsed: Value = serde_json::from_slice(v.value()).unwrap_or(Value::Null);
            let ty = parsed
                .get("type")
                .and_then(Value::as_str)
                .and_then(MetadataType::parse)
                .ok_or_else(|| VectorizeError::engine("read", "corrupt metadata index entry"))?;
            out.push(StoredMetaIndex {
                property: k.value().to_owned(),
                ty,
                created_seq: parsed
                    .get("created_seq")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_through_its_encoding() {
        let mut meta = Metadata::new();
        meta.insert("k".into(), json!({"n": [1, 2]}));
        for r in [
            Record {
                seq: 7,
                namespace: Some("ns".into()),
                values: vec![1.5, -2.0, 0.0],
                metadata: Some(meta),
            },
            Record {
                seq: 0,
                namespace: None,
                values: vec![],
                metadata: None,
            },
            Record {
                seq: 1,
                namespace: Some(String::new()),
                values: vec![3.0],
                metadata: None,
            },
        ] {
            assert_eq!(Record::decode(&r.encode()), Some(r));
        }
        assert_eq!(Record::decode(b"junk"), None);
    }
}

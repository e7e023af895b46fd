//! Metadata: validation of what is written, and the metadata indexes' posting lists.

use std::collections::BTreeMap;

use bindery_core::vectorize::{Metadata, MetadataType, VectorizeError, VectorizeResult};
use serde_json::Value;

/// An indexed value. Keys of one index all have the index's type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Key {
    Bool(bool),
    Num(OrdF64),
    Str(String),
}

impl Key {
    /// A number key (`-0.0` is stored as `0.0`, so they compare equal).
    pub fn num(n: f64) -> Key {
        Key::Num(OrdF64(if n == 0.0 { 0.0 } else { n }))
    }

    /// The JSON value of this key.
    pub fn to_json(&self) -> Value {
        match self {
            Key::Bool(b) => Value::Bool(*b),
            Key::Num(n) => serde_json::Number::from_f64(n.0).map_or(Value::Null, Value::Number),
            Key::Str(s) => Value::String(s.clone()),
        }
    }
}

/// An `f64` with a total order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OrdF64(pub f64);

impl PartialEq for OrdF64 {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}

impl Eq for OrdF64 {}

impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The value at a dotted `path` inside `meta`.
pub(crate) fn lookup<'a>(meta: &'a Metadata, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut cur = meta.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

/// What an index of type `ty` stores for `meta` at `path`, if anything.
pub(crate) fn indexed_value(
    meta: &Metadata,
    path: &str,
    ty: MetadataType,
    max_str: usize,
) -> Option<Key> {
    match (lookup(meta, path)?, ty) {
        (Value::String(s), MetadataType::String) => {
            Some(Key::Str(truncate_utf8(s, max_str).to_owned()))
        }
        (Value::Number(n), MetadataType::Number) => n.as_f64().map(Key::num),
        (Value::Bool(b), MetadataType::Boolean) => Some(Key::Bool(*b)),
        _ => None,
    }
}

/// Places `value` at the dotted `path` of `out`, creating nested objects.
pub(crate) fn place(out: &mut Metadata, path: &str, value: Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut cur = out;
    for p in parts {
        let entry = cur
            .entry(p.to_owned())
            .or_insert_with(|| Value::Object(Metadata::new()));
        if !entry.is_object() {
            *entry = Value::Object(Metadata::new());
        }
        match entry {
            Value::Object(m) => cur = m,
            _ => return,
        }
    }
    cur.insert(last.to_owned(), value);
}

/// Checks metadata keys (at every depth) and size.
pub(crate) fn validate(id: &str, meta: &Metadata, max_bytes: usize) -> VectorizeResult<()> {
    fn keys(id: &str, m: &Metadata) -> VectorizeResult<()> {
        for (k, v) in m {
            if k.is_empty() || k.contains('.') || k.contains('"') || k.starts_with('$') {
                return Err(VectorizeError::InvalidMetadataKey {
                    id: id.to_owned(),
                    key: k.clone(),
                });
            }
            if let Value::Object(inner) = v {
                keys(id, inner)?;
            }
        }
        Ok(())
    }
    keys(id, meta)?;
    if max_bytes != usize::MAX {
        let len = serde_json::to_vec(meta)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if len > max_bytes {
            return Err(VectorizeError::MetadataTooLarge {
                id: id.to_owned(),
                len,
                limit: max_bytes,
            });
        }
    }
    Ok(())
}

/// One metadata index in memory: its definition and value -> nodes posting lists.
///
/// Posting lists are ascending (nodes are numbered in write order) and may include deleted
/// nodes, which evaluation removes.
#[derive(Debug, Clone)]
pub(crate) struct MetaIndex {
    pub property: String,
    pub ty: MetadataType,
    /// The mutation that created the index: only vectors written after it are indexed.
    pub created_seq: u64,
    pub postings: BTreeMap<Key, Vec<u32>>,
}

impl MetaIndex {
    /// An empty index.
    pub fn new(property: String, ty: MetadataType, created_seq: u64) -> Self {
        Self {
            property,
            ty,
            created_seq,
            postings: BTreeMap::new(),
        }
    }

    /// Whether a vector written at `seq` belongs in this index.
    pub fn covers(&self, seq: u64) -> bool {
        seq > self.created_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Metadata {
        match v {
            Value::Object(m) => m,
            _ => Metadata::new(),
        }
    }

    #[test]
    fn strings_are_indexed_on_their_first_64_bytes_at_a_char_boundary() {
        let long = format!("{}\u{e9}", "a".repeat(63));
        let m = obj(json!({ "s": long }));
        assert_eq!(
            indexed_value(&m, "s", MetadataType::String, 64),
            Some(Key::Str("a".repeat(63)))
        );
        assert_eq!(indexed_value(&m, "s", MetadataType::Number, 64), None);
    }

    #[test]
    fn dotted_paths_reach_nested_values_and_place_rebuilds_them() {
        let m = obj(json!({"a": {"b": {"c": 2}}}));
        assert_eq!(
            indexed_value(&m, "a.b.c", MetadataType::Number, 64),
            Some(Key::num(2.0))
        );
        let mut out = Metadata::new();
        place(&mut out, "a.b.c", json!(2));
        assert_eq!(Value::Object(out), json!({"a": {"b": {"c": 2}}}));
    }

    #[test]
    fn bad_keys_and_large_metadata_are_rejected() {
        assert!(validate("v", &obj(json!({"a.b": 1})), 100).is_err());
        assert!(validate("v", &obj(json!({"x": {"$y": 1}})), 100).is_err());
        assert!(validate("v", &obj(json!({"x": "y".repeat(200)})), 100).is_err());
        assert!(validate("v", &obj(json!({"x": 1})), 100).is_ok());
    }
}

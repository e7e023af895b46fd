//! Metadata filters: parsing with Vectorize's validation rules, and evaluation against the
//! metadata indexes' posting lists.
//!
//! A filter is a JSON object whose keys are property paths (`a.b` reaches `{"a": {"b": ..}}`)
//! and whose values are a bare scalar (implicit `$eq`) or an object of operators. Keys are
//! combined with AND. Evaluation turns each clause into a set of node numbers, read from the
//! posting lists of the property's metadata index, and intersects them.

use std::collections::BTreeMap;
use std::ops::Bound;

use bindery_core::vectorize::{MetadataType, VectorizeError, VectorizeLimits, VectorizeResult};
use serde_json::Value;

use crate::bits::Bits;
use crate::metadata::{Key, MetaIndex, truncate_utf8};

/// A filter operand.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

/// One clause's operator.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    Eq(Scalar),
    Ne(Scalar),
    In(Vec<Scalar>),
    Nin(Vec<Scalar>),
    Range {
        lower: Option<(Scalar, bool)>,
        upper: Option<(Scalar, bool)>,
    },
}

/// `path op`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Clause {
    pub path: String,
    pub op: Op,
}

/// A parsed filter: the AND of its clauses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Filter {
    pub clauses: Vec<Clause>,
}

fn invalid(reason: impl Into<String>) -> VectorizeError {
    VectorizeError::InvalidFilter {
        reason: reason.into(),
    }
}

/// Checks a filter key or metadata index property: non-empty, no `"`, not starting with `$`,
/// dots only between non-empty segments, at most `max_chars` characters.
pub(crate) fn check_path(path: &str, max_chars: usize) -> Result<(), String> {
    if path.is_empty() {
        return Err("keys must not be empty".into());
    }
    let chars = path.chars().count();
    if chars > max_chars {
        return Err(format!(
            "key is {chars} characters; the limit is {max_chars}"
        ));
    }
    if path.contains('"') {
        return Err("keys must not contain '\"'".into());
    }
    if path.starts_with('$') {
        return Err("keys must not start with '$'".into());
    }
    if path.split('.').any(str::is_empty) {
        return Err("'.' may only separate non-empty path segments".into());
    }
    Ok(())
}

fn scalar(v: &Value, op: &str, key: &str) -> VectorizeResult<Scalar> {
    match v {
        Value::String(s) => Ok(Scalar::Str(s.clone())),
        Value::Number(n) => n
            .as_f64()
            .map(Scalar::Num)
            .ok_or_else(|| invalid(format!("{key}: {op} number out of range"))),
        Value::Bool(b) => Ok(Scalar::Bool(*b)),
        Value::Null => Ok(Scalar::Null),
        _ => Err(invalid(format!(
            "{key}: {op} takes a string, number, boolean or null"
        ))),
    }
}

fn range_scalar(v: &Value, op: &str, key: &str) -> VectorizeResult<Scalar> {
    match v {
        Value::String(_) | Value::Number(_) => scalar(v, op, key),
        _ => Err(invalid(format!("{key}: {op} takes a string or a number"))),
    }
}

/// Parses and validates `filter`.
pub(crate) fn parse(filter: &Value, limits: &VectorizeLimits) -> VectorizeResult<Filter> {
    let Value::Object(map) = filter else {
        return Err(invalid("the filter must be a JSON object"));
    };
    if map.is_empty() {
        return Err(invalid("the filter must not be empty"));
    }
    let compact = serde_json::to_string(filter).map(|s| s.len()).unwrap_or(0);
    if compact >= limits.max_filter_bytes {
        return Err(VectorizeError::FilterTooLarge {
            len: compact,
            limit: limits.max_filter_bytes,
        });
    }
    let mut clauses = Vec::with_capacity(map.len());
    for (key, v) in map {
        check_path(key, limits.max_filter_key_chars)
            .map_err(|r| invalid(format!("{key:?}: {r}")))?;
        let op = match v {
            Value::Object(ops) => parse_ops(key, ops)?,
            Value::Array(_) => {
                return Err(invalid(format!(
                    "{key}: a bare value must be a string, number, boolean or null; use $in for lists"
                )));
            }
            other => Op::Eq(scalar(other, "$eq", key)?),
        };
        clauses.push(Clause {
            path: key.clone(),
            op,
        });
    }
    Ok(Filter { clauses })
}

fn parse_ops(key: &str, ops: &serde_json::Map<String, Value>) -> VectorizeResult<Op> {
    if ops.is_empty() {
        return Err(invalid(format!(
            "{key}: an operator object must not be empty"
        )));
    }
    let mut lower = None;
    let mut upper = None;
    let mut single = None;
    for (op, v) in ops {
        match op.as_str() {
            "$eq" => single = Some(Op::Eq(scalar(v, op, key)?)),
            "$ne" => single = Some(Op::Ne(scalar(v, op, key)?)),
            "$in" | "$nin" => {
                let Value::Array(items) = v else {
                    return Err(invalid(format!("{key}: {op} takes an array")));
                };
                let list = items
                    .iter()
                    .map(|x| scalar(x, op, key))
                    .collect::<VectorizeResult<Vec<_>>>()?;
                single = Some(if op == "$in" {
                    Op::In(list)
                } else {
                    Op::Nin(list)
                });
            }
            "$gt" | "$gte" => {
                if lower.is_some() {
                    return Err(invalid(format!(
                        "{key}: only one lower bound ($gt or $gte) is allowed"
                    )));
                }
                lower = Some((range_scalar(v, op, key)?, op == "$gte"));
            }
            "$lt" | "$lte" => {
                if upper.is_some() {
                    return Err(invalid(format!(
                        "{key}: only one upper bound ($lt or $lte) is allowed"
                    )));
                }
                upper = Some((range_scalar(v, op, key)?, op == "$lte"));
            }
            other => {
                return Err(invalid(format!(
                    "{key}: unknown operator {other:?}; allowed: $eq, $ne, $in, $nin, $lt, $lte, $gt, $gte"
                )));
            }
        }
    }
    match single {
        Some(op) if ops.len() == 1 => Ok(op),
        Some(_) => Err(invalid(format!(
            "{key}: only one lower bound may be combined with one upper bound; other operators stand alone"
        ))),
        None => Ok(Op::Range { lower, upper }),
    }
}

/// The index key a filter operand compares as, for an index of type `ty`; `None` when the
/// operand's type cannot equal any indexed value.
fn key_of(s: &Scalar, ty: MetadataType, max_str: usize) -> Option<Key> {
    match (s, ty) {
        (Scalar::Str(v), MetadataType::String) => {
            Some(Key::Str(truncate_utf8(v, max_str).to_owned()))
        }
        (Scalar::Num(n), MetadataType::Number) => Some(Key::num(*n)),
        (Scalar::Bool(b), MetadataType::Boolean) => Some(Key::Bool(*b)),
        _ => None,
    }
}

fn union_keys(
    map: &BTreeMap<Key, Vec<u32>>,
    keys: impl Iterator<Item = Option<Key>>,
    bits: &mut Bits,
) {
    for k in keys.flatten() {
        if let Some(list) = map.get(&k) {
            bits.set_all(list);
        }
    }
}

fn all_values(map: &BTreeMap<Key, Vec<u32>>, bits: &mut Bits) {
    for list in map.values() {
        bits.set_all(list);
    }
}

/// The nodes that pass `clause`, as a set over `n` nodes (deleted nodes may be included).
pub(crate) fn eval_clause(
    clause: &Clause,
    index: Option<&MetaIndex>,
    n: usize,
    max_str: usize,
) -> Bits {
    let mut bits = Bits::new(n);
    let Some(ix) = index else {
        return bits;
    };
    let ty = ix.ty;
    match &clause.op {
        Op::Eq(s) => union_keys(
            &ix.postings,
            std::iter::once(key_of(s, ty, max_str)),
            &mut bits,
        ),
        Op::In(list) => union_keys(
            &ix.postings,
            list.iter().map(|s| key_of(s, ty, max_str)),
            &mut bits,
        ),
        Op::Ne(s) => {
            all_values(&ix.postings, &mut bits);
            let mut eq = Bits::new(n);
            union_keys(
                &ix.postings,
                std::iter::once(key_of(s, ty, max_str)),
                &mut eq,
            );
            bits.and_not(&eq);
        }
        Op::Nin(list) => {
            all_values(&ix.postings, &mut bits);
            let mut eq = Bits::new(n);
            union_keys(
                &ix.postings,
                list.iter().map(|s| key_of(s, ty, max_str)),
                &mut eq,
            );
            bits.and_not(&eq);
        }
        Op::Range { lower, upper } => {
            let bound = |b: &Option<(Scalar, bool)>| -> Option<Bound<Key>> {
                match b {
                    None => Some(Bound::Unbounded),
                    Some((s, inclusive)) => {
                        let k = key_of(s, ty, usize::MAX)?;
                        Some(if *inclusive {
                            Bound::Included(k)
                        } else {
                            Bound::Excluded(k)
                        })
                    }
                }
            };
            if ty == MetadataType::Boolean {
                return bits;
            }
            let (Some(lo), Some(hi)) = (bound(lower), bound(upper)) else {
                return bits;
            };
            // A range bound of the wrong type matches nothing; a range whose bounds cross is
            // empty (BTreeMap::range would panic on it).
            if let (
                Bound::Included(a) | Bound::Excluded(a),
                Bound::Included(b) | Bound::Excluded(b),
            ) = (&lo, &hi)
            {
                let both_inclusive = matches!((&lo, &hi), (Bound::Included(_), Bound::Included(_)));
                if a > b || (a == b && !both_inclusive) {
                    return bits;
                }
            }
            // Postings hold only keys of the index's type, and both bounds have that type.
            for list in ix.postings.range((lo, hi)).map(|(_, l)| l) {
                bits.set_all(list);
            }
        }
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lim() -> VectorizeLimits {
        VectorizeLimits::cloudflare()
    }

    #[test]
    fn bare_values_are_implicit_eq_and_keys_are_anded() {
        let f = parse(&json!({"a": "x", "b.c": 3}), &lim()).expect("valid");
        assert_eq!(f.clauses.len(), 2);
        assert_eq!(f.clauses[0].op, Op::Eq(Scalar::Str("x".into())));
        assert_eq!(f.clauses[1].path, "b.c");
    }

    #[test]
    fn one_lower_and_one_upper_bound_combine_and_nothing_else_does() {
        assert!(parse(&json!({"a": {"$gte": 1, "$lt": 5}}), &lim()).is_ok());
        assert!(parse(&json!({"a": {"$gte": 1, "$gt": 5}}), &lim()).is_err());
        assert!(parse(&json!({"a": {"$lt": 1, "$lte": 5}}), &lim()).is_err());
        assert!(parse(&json!({"a": {"$eq": 1, "$lt": 5}}), &lim()).is_err());
        assert!(parse(&json!({"a": {"$gt": true}}), &lim()).is_err());
        assert!(parse(&json!({"a": {"$in": 1}}), &lim()).is_err());
        assert!(parse(&json!({"a": {"$regex": "x"}}), &lim()).is_err());
    }

    #[test]
    fn bad_keys_and_oversized_filters_are_rejected() {
        for bad in [
            json!({"": 1}),
            json!({"$a": 1}),
            json!({"a..b": 1}),
            json!({"a\"b": 1}),
            json!({}),
            json!([1]),
        ] {
            assert!(parse(&bad, &lim()).is_err(), "{bad}");
        }
        let long = "x".repeat(2100);
        assert!(matches!(
            parse(&json!({"a": long}), &lim()),
            Err(VectorizeError::FilterTooLarge { .. })
        ));
    }
}

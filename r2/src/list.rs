//! Listing: prefix, delimiter with delimited prefixes, cursor and `start_after`, in key byte
//! order, over one read snapshot of the index.
//!
//! A cursor names a position: "after this key" or "at or after this byte string" (the
//! successor of a rolled-up prefix, so that the next page skips every key under it). It is
//! opaque to callers: URL-safe base64 of a tag byte and the position's bytes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bindery_core::r2::{ListOptions, R2Error, R2Limits, R2Objects, R2Result};
use rusqlite::Connection;

use crate::index::{EngineExt, OBJECT_COLUMNS, ObjectRow, prefix_end, read_object};

/// Where a page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Position {
    /// Keys strictly after these bytes.
    After(Vec<u8>),
    /// Keys at or after these bytes.
    From(Vec<u8>),
}

impl Position {
    fn encode(&self) -> String {
        let (tag, bytes) = match self {
            Position::After(b) => (b'a', b),
            Position::From(b) => (b'f', b),
        };
        let mut raw = Vec::with_capacity(bytes.len() + 1);
        raw.push(tag);
        raw.extend_from_slice(bytes);
        URL_SAFE_NO_PAD.encode(raw)
    }

    fn decode(cursor: &str) -> R2Result<Self> {
        let raw = URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| R2Error::InvalidCursor {
                reason: "not a cursor this bucket produced",
            })?;
        match raw.split_first() {
            Some((b'a', rest)) => Ok(Position::After(rest.to_vec())),
            Some((b'f', rest)) => Ok(Position::From(rest.to_vec())),
            _ => Err(R2Error::InvalidCursor {
                reason: "not a cursor this bucket produced",
            }),
        }
    }

    /// The later of two positions.
    fn max(self, other: Position) -> Position {
        let key = |p: &Position| match p {
            Position::After(b) => (b.clone(), 1u8),
            Position::From(b) => (b.clone(), 0u8),
        };
        if key(&self) >= key(&other) {
            self
        } else {
            other
        }
    }
}

/// Rows read per query when listing with a delimiter.
const DELIMITED_BATCH: usize = 64;

/// Validates a page size.
pub(crate) fn page_limit(limit: Option<usize>, limits: &R2Limits) -> R2Result<usize> {
    let max = limits.max_list_limit;
    let limit = limit.unwrap_or(max);
    if limit == 0 || limit > max {
        return Err(R2Error::InvalidMaxKeys { limit, max });
    }
    Ok(limit)
}

/// One page of objects.
pub(crate) fn list(
    conn: &Connection,
    options: &ListOptions,
    limits: &R2Limits,
) -> R2Result<R2Objects> {
    let limit = page_limit(options.limit, limits)?;
    let prefix = options.prefix.clone().unwrap_or_default();
    let upper = prefix_end(prefix.as_bytes());
    let delimiter = options.delimiter.as_deref().filter(|d| !d.is_empty());

    let mut pos = Position::From(prefix.as_bytes().to_vec());
    if let Some(after) = &options.start_after {
        pos = pos.max(Position::After(after.as_bytes().to_vec()));
    }
    if let Some(cursor) = &options.cursor {
        pos = pos.max(Position::decode(cursor)?);
    }

    let mut objects = Vec::new();
    let mut delimited_prefixes = Vec::new();
    // With a delimiter, a batch may end at its first row (a rolled-up prefix), so batches
    // stay small: rolling up many prefixes must not read `limit` rows for each.
    let batch = if delimiter.is_some() {
        (limit + 1).min(DELIMITED_BATCH)
    } else {
        limit + 1
    };
    'pages: loop {
        let rows = fetch(conn, &pos, upper.as_deref(), batch)?;
        let exhausted = rows.len() < batch;
        for row in rows {
            if objects.len() + delimited_prefixes.len() == limit {
                // More items exist past the page.
                return Ok(page(objects, delimited_prefixes, true, pos, options));
            }
            if let Some(delim) = delimiter {
                let rest = &row.key[prefix.len()..];
                if let Some(i) = rest.find(delim) {
                    let rolled = format!("{prefix}{}", &rest[..i + delim.len()]);
                    pos = match prefix_end(rolled.as_bytes()) {
                        Some(next) => Position::From(next),
                        None => Position::After(rolled.as_bytes().to_vec()),
                    };
                    delimited_prefixes.push(rolled);
                    // Skip the rest of this batch: it may hold keys under the rolled prefix.
                    continue 'pages;
                }
            }
            pos = Position::After(row.key.as_bytes().to_vec());
            objects.push(row);
        }
        if exhausted {
            break;
        }
    }
    let truncated = objects.len() + delimited_prefixes.len() == limit
        && !fetch(conn, &pos, upper.as_deref(), 1)?.is_empty();
    Ok(page(objects, delimited_prefixes, truncated, pos, options))
}

fn page(
    rows: Vec<ObjectRow>,
    delimited_prefixes: Vec<String>,
    truncated: bool,
    pos: Position,
    options: &ListOptions,
) -> R2Objects {
    let objects = rows
        .into_iter()
        .map(|row| {
            let mut o = row.to_object();
            if !options.include.http_metadata {
                o.http_metadata = Default::default();
            }
            if !options.include.custom_metadata {
                o.custom_metadata = Default::default();
            }
            o
        })
        .collect();
    R2Objects {
        objects,
        truncated,
        cursor: truncated.then(|| pos.encode()),
        delimited_prefixes,
    }
}

fn fetch(
    conn: &Connection,
    pos: &Position,
    upper: Option<&[u8]>,
    limit: usize,
) -> R2Result<Vec<ObjectRow>> {
    let (op, lower) = match pos {
        Position::After(b) => (">", b),
        Position::From(b) => (">=", b),
    };
    let sql = match upper {
        Some(_) => format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE key {op} ?1 AND key < ?2 ORDER BY key LIMIT ?3"
        ),
        None => {
            format!("SELECT {OBJECT_COLUMNS} FROM objects WHERE key {op} ?1 ORDER BY key LIMIT ?3")
        }
    };
    let mut st = conn.prepare_cached(&sql).during("listing")?;
    st.raw_bind_parameter(1, lower.as_slice())
        .during("listing")?;
    if let Some(u) = upper {
        st.raw_bind_parameter(2, u).during("listing")?;
    }
    st.raw_bind_parameter(3, limit as i64).during("listing")?;
    let mut rows = st.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next().during("listing")? {
        out.push(read_object(row).during("listing")?);
    }
    Ok(out)
}

/// Encodes an opaque cursor for uploads listing ("after this key and upload id").
pub(crate) fn encode_upload_cursor(key: &str, upload_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{upload_id}\n{key}"))
}

/// Decodes a cursor from [`encode_upload_cursor`].
pub(crate) fn decode_upload_cursor(cursor: &str) -> R2Result<(String, String)> {
    let bad = || R2Error::InvalidCursor {
        reason: "not an uploads cursor this bucket produced",
    };
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, key) = text.split_once('\n').ok_or_else(bad)?;
    Ok((key.to_owned(), id.to_owned()))
}

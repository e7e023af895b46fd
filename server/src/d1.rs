//! workerd's D1 protocol (the `wrapped` binding `cloudflare-internal:d1-api` with an inner
//! `fetcher`) over a [`D1Database`].
//!
//! | request | operation |
//! |---|---|
//! | `POST /query?resultsFormat=ROWS_AND_COLUMNS` `{"sql","params"}` | `all` / `first` / `raw` |
//! | `POST /query?resultsFormat=ROWS_AND_COLUMNS` `[{"sql","params"},...]` | `batch` (one transaction) |
//! | `POST /execute?resultsFormat=NONE` `{"sql","params"}` | `run` |
//! | `POST /execute?resultsFormat=NONE` `[{"sql":"line"},...]` | `exec`, one element per line |
//!
//! Every success item carries `meta`; errors are `200 {"success":false,"error":M}` (the
//! client adds the `D1_ERROR: ` prefix). A failed batch answers one error object, so that the
//! client throws. `exec` stops at the first failing line and answers the results so far plus
//! that line's error, from which the client builds `D1_EXEC_ERROR: Error in line N`.
//! `x-cf-d1-session-commit-token` carries a session's constraint or bookmark in, and the
//! bookmark out.

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode};
use bindery_core::d1::{
    D1Database, D1Error, D1QueryOptions, D1ResultsFormat, D1SessionConstraint, D1Statement,
};
use serde_json::{Value, json};

use crate::body;
use crate::errors::{Protocol, ServerError, error_response};

/// The session header.
pub const SESSION_HEADER: &str = "x-cf-d1-session-commit-token";

/// Largest request body (a batch of statements with their parameters).
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Handles one D1 binding request.
pub async fn handle(db: &dyn D1Database, req: Request<Body>) -> Response<Body> {
    let session = req
        .headers()
        .get(SESSION_HEADER)
        .map(|v| D1SessionConstraint::parse(String::from_utf8_lossy(v.as_bytes()).trim()));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let format = crate::wire::form_query(req.uri().query())
        .into_iter()
        .find(|(k, _)| k == "resultsFormat")
        .map(|(_, v)| v);
    let format = match format.as_deref() {
        None => D1ResultsFormat::RowsAndColumns,
        Some(f) => match D1ResultsFormat::parse(f) {
            Some(f) => f,
            None => {
                return error_response(
                    Protocol::D1,
                    &ServerError::BadQuery {
                        name: "resultsFormat",
                        reason: format!(
                            "{f:?}; expected ROWS_AND_COLUMNS, ARRAY_OF_OBJECTS or NONE"
                        ),
                    },
                );
            }
        },
    };
    if method != Method::POST || !(path == "/query" || path == "/execute") {
        let err = if path == "/dump" {
            ServerError::Unsupported {
                what: "dump() (deprecated; use `bindery d1 export`)".into(),
            }
        } else {
            ServerError::NoRoute {
                method: method.to_string(),
                path,
            }
        };
        return error_response(Protocol::D1, &err);
    }
    let raw = match body::read_capped(req.into_body(), BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => return error_response(Protocol::D1, &e),
    };
    let request: Value = match serde_json::from_slice(&raw) {
        Ok(v) => v,
        Err(e) => {
            return error_response(
                Protocol::D1,
                &ServerError::BadBody {
                    reason: format!("the D1 request is not JSON: {e}"),
                },
            );
        }
    };
    let options = D1QueryOptions {
        session: session.clone(),
    };
    let (answer, bookmark) = match (&request, path.as_str()) {
        (Value::Array(items), "/execute") => (exec(db, items).await, None),
        (Value::Array(items), _) => match statements(items) {
            Ok(stmts) => match db.query_batch(&stmts, &options).await {
                Ok(r) => (
                    Value::Array(r.results.iter().map(|x| x.to_json(format)).collect()),
                    r.bookmark,
                ),
                Err(e) => (error_json(&e), None),
            },
            Err(e) => (error_json(&e), None),
        },
        (item @ Value::Object(_), _) => match statement(item) {
            Ok(stmt) => match db.query_batch(std::slice::from_ref(&stmt), &options).await {
                Ok(r) => (
                    r.results
                        .first()
                        .map(|x| x.to_json(format))
                        .unwrap_or_else(|| error_json(&D1Error::NoStatements)),
                    r.bookmark,
                ),
                Err(e) => (error_json(&e), None),
            },
            Err(e) => (error_json(&e), None),
        },
        _ => {
            return error_response(
                Protocol::D1,
                &ServerError::BadBody {
                    reason: "expected a statement object or an array of them".into(),
                },
            );
        }
    };
    let bookmark = match (bookmark, &session) {
        (Some(b), _) => Some(b),
        (None, Some(_)) => db.bookmark().await.ok(),
        (None, None) => None,
    };
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json");
    if let Some(b) = bookmark.and_then(|b| HeaderValue::from_str(&b).ok()) {
        builder = builder.header(SESSION_HEADER, b);
    }
    builder
        .body(Body::from(answer.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// The error object of the protocol, through the one error table's message rules.
fn error_json(err: &D1Error) -> Value {
    if matches!(err, D1Error::Engine { .. } | D1Error::Poisoned { .. }) {
        tracing::error!(error = %err, "D1 request failed");
        return json!({"success": false, "error": "internal error in the Bindery server; see its log"});
    }
    json!({"success": false, "error": err.message()})
}

fn statement(item: &Value) -> Result<D1Statement, D1Error> {
    let sql = item
        .get("sql")
        .and_then(Value::as_str)
        .ok_or(D1Error::NoStatements)?;
    let stmt = D1Statement::new(sql);
    match item.get("params") {
        None | Some(Value::Null) => Ok(stmt),
        Some(Value::Array(params)) => stmt.bind_json(params),
        Some(other) => Err(D1Error::Type {
            message: format!("params must be an array, got {other}"),
        }),
    }
}

fn statements(items: &[Value]) -> Result<Vec<D1Statement>, D1Error> {
    items.iter().map(statement).collect()
}

/// `exec`: each element is one line of the caller's text, run on its own; stops at the
/// first failure.
async fn exec(db: &dyn D1Database, items: &[Value]) -> Value {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let sql = item.get("sql").and_then(Value::as_str).unwrap_or("");
        if sql.trim().is_empty() {
            out.push(
                json!({"success": true, "meta": bindery_core::d1::D1Meta::default().to_json()}),
            );
            continue;
        }
        match db.exec(sql).await {
            Ok(r) => {
                let mut meta = r.meta.to_json();
                meta["duration"] = json!(r.duration);
                out.push(json!({"success": true, "meta": meta}));
            }
            Err(D1Error::NoStatements) => {
                out.push(
                    json!({"success": true, "meta": bindery_core::d1::D1Meta::default().to_json()}),
                );
            }
            Err(D1Error::Exec { message, .. }) => {
                out.push(json!({"success": false, "error": message}));
                break;
            }
            Err(e) => {
                out.push(error_json(&e));
                break;
            }
        }
    }
    Value::Array(out)
}

//! SQLite's built-in math functions (`sqrt`, `pow`, `ln`, `sin`, ...), which D1 enables.
//!
//! The bundled SQLite is compiled without `SQLITE_ENABLE_MATH_FUNCTIONS`, so the same
//! functions are registered here with SQLite's documented behaviour: arguments are converted
//! to numbers, NULL or a non-numeric argument gives NULL, and so does a domain error
//! (`sqrt(-1)`, `ln(0)`); `ceil`, `floor` and `trunc` keep integers as integers.

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, Result};

fn num(ctx: &Context<'_>, i: usize) -> Option<f64> {
    match ctx.get_raw(i) {
        ValueRef::Integer(v) => Some(v as f64),
        ValueRef::Real(v) => Some(v),
        ValueRef::Text(t) => std::str::from_utf8(t).ok()?.trim().parse().ok(),
        ValueRef::Null | ValueRef::Blob(_) => None,
    }
}

fn finite(v: f64) -> Option<f64> {
    if v.is_nan() { None } else { Some(v) }
}

fn unary(conn: &Connection, name: &str, f: fn(f64) -> f64) -> Result<()> {
    conn.create_scalar_function(
        name,
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        move |ctx| Ok(num(ctx, 0).and_then(|x| finite(f(x)))),
    )
}

fn binary(conn: &Connection, name: &str, f: fn(f64, f64) -> f64) -> Result<()> {
    conn.create_scalar_function(
        name,
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        move |ctx| {
            Ok(match (num(ctx, 0), num(ctx, 1)) {
                (Some(a), Some(b)) => finite(f(a, b)),
                _ => None,
            })
        },
    )
}

/// `ceil`, `floor`, `trunc`: integers stay integers, reals are rounded as reals.
fn rounding(conn: &Connection, name: &str, f: fn(f64) -> f64) -> Result<()> {
    conn.create_scalar_function(
        name,
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        move |ctx| {
            Ok(match ctx.get_raw(0) {
                ValueRef::Integer(i) => Value::Integer(i),
                _ => num(ctx, 0).map_or(Value::Null, |x| Value::Real(f(x))),
            })
        },
    )
}

/// Registers the math functions on `conn`.
pub(crate) fn register(conn: &Connection) -> Result<()> {
    unary(conn, "acos", f64::acos)?;
    unary(conn, "acosh", f64::acosh)?;
    unary(conn, "asin", f64::asin)?;
    unary(conn, "asinh", f64::asinh)?;
    unary(conn, "atan", f64::atan)?;
    unary(conn, "atanh", f64::atanh)?;
    unary(conn, "cos", f64::cos)?;
    unary(conn, "cosh", f64::cosh)?;
    unary(conn, "degrees", f64::to_degrees)?;
    unary(conn, "exp", f64::exp)?;
    unary(conn, "radians", f64::to_radians)?;
    unary(conn, "sin", f64::sin)?;
    unary(conn, "sinh", f64::sinh)?;
    unary(conn, "tan", f64::tan)?;
    unary(conn, "tanh", f64::tanh)?;
    unary(conn, "ln", |x| if x > 0.0 { x.ln() } else { f64::NAN })?;
    unary(conn, "log", |x| if x > 0.0 { x.log10() } else { f64::NAN })?;
    unary(
        conn,
        "log10",
        |x| if x > 0.0 { x.log10() } else { f64::NAN },
    )?;
    unary(conn, "log2", |x| if x > 0.0 { x.log2() } else { f64::NAN })?;
    unary(conn, "sqrt", |x| if x < 0.0 { f64::NAN } else { x.sqrt() })?;
    rounding(conn, "ceil", f64::ceil)?;
    rounding(conn, "ceiling", f64::ceil)?;
    rounding(conn, "floor", f64::floor)?;
    rounding(conn, "trunc", f64::trunc)?;
    binary(conn, "atan2", f64::atan2)?;
    binary(conn, "pow", f64::powf)?;
    binary(conn, "power", f64::powf)?;
    binary(conn, "mod", |a, b| if b == 0.0 { f64::NAN } else { a % b })?;
    // log(B, X): logarithm of X in base B.
    binary(conn, "log", |b, x| {
        if b > 0.0 && b != 1.0 && x > 0.0 {
            x.ln() / b.ln()
        } else {
            f64::NAN
        }
    })?;
    conn.create_scalar_function(
        "pi",
        0,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |_| Ok(std::f64::consts::PI),
    )
}

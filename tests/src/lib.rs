//! Bindery's contracts as tests.
//!
//! Each primitive has a module of plain `pub async fn` cases, one per documented behaviour,
//! named as sentences. A backend runs the whole suite with one macro call in its own test
//! file, which expands to one `#[tokio::test]` per case, so a failure names the behaviour:
//!
//! ```ignore
//! bindery_conformance::kv_conformance!(my_factory);
//! ```
//!
//! The backend's crate needs `tokio` (with `macros` and `rt-multi-thread`) as a dev-dependency.
//! Cases take a factory that opens a fresh, empty store under a [`ManualClock`] and with the
//! limits the case asks for; time in cases moves only by advancing that clock.
//!
//! [`ManualClock`]: bindery_core::ManualClock

pub mod d1;
pub mod durable;
pub mod kv;
pub mod queues;
pub mod r2;
pub mod vectorize;

/// What every case returns: `Err` carries the first failed expectation.
pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Fails the case with a message when `cond` is false.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+).into());
        }
    };
}

/// Fails the case unless `left == right`.
#[macro_export]
macro_rules! ensure_eq {
    ($left:expr, $right:expr $(,)?) => {
        match (&$left, &$right) {
            (l, r) => {
                if l != r {
                    return Err(format!(
                        "{} != {}\n  left: {:?}\n right: {:?}",
                        stringify!($left),
                        stringify!($right),
                        l,
                        r
                    )
                    .into());
                }
            }
        }
    };
}

/// Expands a module's case list into `#[tokio::test]` functions calling `$factory`.
#[doc(hidden)]
#[macro_export]
macro_rules! __expand_cases {
    ($factory:expr, $module:ident, [$($case:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() -> $crate::TestResult {
                $crate::$module::$case(&$factory).await
            }
        )*
    };
}

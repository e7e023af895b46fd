//! The D1 contract.
//!
//! Filled in by the D1 issue; until then this module holds only the limits type so that
//! [`crate::Limits`] is complete.

/// D1's documented limits.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct D1Limits {}

impl D1Limits {
    /// Cloudflare's documented values.
    pub fn cloudflare() -> Self {
        Self {}
    }

    /// Relaxed limits.
    pub fn unbounded() -> Self {
        Self {}
    }
}

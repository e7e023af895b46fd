//! The R2 contract.
//!
//! Filled in by the R2 issue; until then this module holds only the limits type so that
//! [`crate::Limits`] is complete.

/// R2's documented limits.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct R2Limits {}

impl R2Limits {
    /// Cloudflare's documented values.
    pub fn cloudflare() -> Self {
        Self {}
    }

    /// Relaxed limits.
    pub fn unbounded() -> Self {
        Self {}
    }
}

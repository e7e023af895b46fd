//! The Vectorize contract.
//!
//! Filled in by the Vectorize issue; until then this module holds only the limits type so that
//! [`crate::Limits`] is complete.

/// Vectorize's documented limits.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct VectorizeLimits {}

impl VectorizeLimits {
    /// Cloudflare's documented values.
    pub fn cloudflare() -> Self {
        Self {}
    }

    /// Relaxed limits.
    pub fn unbounded() -> Self {
        Self {}
    }
}

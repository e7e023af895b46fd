//! The Durable Objects contract.
//!
//! Filled in by the Durable Objects issue; until then this module holds only the limits type so that
//! [`crate::Limits`] is complete.

/// Durable Objects's documented limits.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct DurableLimits {}

impl DurableLimits {
    /// Cloudflare's documented values.
    pub fn cloudflare() -> Self {
        Self {}
    }

    /// Relaxed limits.
    pub fn unbounded() -> Self {
        Self {}
    }
}

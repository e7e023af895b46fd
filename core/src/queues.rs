//! The Queues contract.
//!
//! Filled in by the Queues issue; until then this module holds only the limits type so that
//! [`crate::Limits`] is complete.

/// Queues's documented limits.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct QueueLimits {}

impl QueueLimits {
    /// Cloudflare's documented values.
    pub fn cloudflare() -> Self {
        Self {}
    }

    /// Relaxed limits.
    pub fn unbounded() -> Self {
        Self {}
    }
}

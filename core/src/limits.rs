//! Cloudflare's documented limits, as data.
//!
//! [`Limits::cloudflare`] (also [`Default`]) enforces the platform's documented limits with the
//! platform's documented errors. [`Limits::unbounded`] relaxes them; relaxing is always an
//! explicit choice, never a silent fallback. Each primitive's limits live beside its contract
//! ([`crate::kv::KvLimits`], ...), so a store can be configured with only its own part.

use crate::d1::D1Limits;
use crate::durable::DurableLimits;
use crate::kv::KvLimits;
use crate::queues::QueueLimits;
use crate::r2::R2Limits;
use crate::vectorize::VectorizeLimits;

/// The limits of every primitive.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Workers KV.
    pub kv: KvLimits,
    /// D1.
    pub d1: D1Limits,
    /// R2.
    pub r2: R2Limits,
    /// Durable Objects.
    pub durable: DurableLimits,
    /// Queues.
    pub queues: QueueLimits,
    /// Vectorize.
    pub vectorize: VectorizeLimits,
}

impl Limits {
    /// The documented limits of the Cloudflare platform.
    pub fn cloudflare() -> Self {
        Self {
            kv: KvLimits::cloudflare(),
            d1: D1Limits::cloudflare(),
            r2: R2Limits::cloudflare(),
            durable: DurableLimits::cloudflare(),
            queues: QueueLimits::cloudflare(),
            vectorize: VectorizeLimits::cloudflare(),
        }
    }

    /// Every limit relaxed as far as each primitive allows.
    pub fn unbounded() -> Self {
        Self {
            kv: KvLimits::unbounded(),
            d1: D1Limits::unbounded(),
            r2: R2Limits::unbounded(),
            durable: DurableLimits::unbounded(),
            queues: QueueLimits::unbounded(),
            vectorize: VectorizeLimits::unbounded(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::cloudflare()
    }
}

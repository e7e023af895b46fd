//! Injected time.
//!
//! Every expiry, TTL, cache lifetime, alarm, delay, visibility timeout and retention window in
//! Bindery reads a [`Clock`]. Production code uses [`SystemClock`]; tests use [`ManualClock`]
//! and advance it explicitly, so that no test sleeps to wait for time to pass.
//!
//! Time is expressed as milliseconds since the UNIX epoch (`u64`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A future returned by [`Clock::sleep_until`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A shared, dynamically typed clock, as stores hold it.
pub type SharedClock = Arc<dyn Clock>;

/// A source of wall-clock time that can also wait for a moment to arrive.
///
/// # Contract
///
/// - [`now_ms`](Clock::now_ms) never goes backwards for a [`ManualClock`]; a [`SystemClock`]
///   follows the operating system.
/// - The future from [`sleep_until`](Clock::sleep_until) completes once `now_ms()` is at or
///   past the deadline (at once if it already is). Dropping it cancels the wait.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the UNIX epoch.
    fn now_ms(&self) -> u64;

    /// Whole seconds since the UNIX epoch (rounded down).
    fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// Completes when the clock reads `deadline_ms` or later.
    fn sleep_until(&self, deadline_ms: u64) -> Sleep;
}

/// The operating system's clock, with Tokio timers for waiting.
///
/// `sleep_until` needs a Tokio runtime with the time driver enabled.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// A system clock behind an [`Arc`], ready to hand to a store.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    fn sleep_until(&self, deadline_ms: u64) -> Sleep {
        let wait = deadline_ms.saturating_sub(self.now_ms());
        Box::pin(async move {
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
        })
    }
}

/// A clock that only moves when told to. Clones share the same time.
///
/// Sleepers are woken whenever the clock is advanced past their deadline, so background tasks
/// (sweepers, alarm schedulers, batch timers) run deterministically under test.
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug)]
struct ManualInner {
    now: AtomicU64,
    changed: tokio::sync::watch::Sender<u64>,
}

impl ManualClock {
    /// A clock reading `start_ms` milliseconds since the UNIX epoch.
    pub fn new(start_ms: u64) -> Self {
        let (changed, _) = tokio::sync::watch::channel(start_ms);
        Self {
            inner: Arc::new(ManualInner {
                now: AtomicU64::new(start_ms),
                changed,
            }),
        }
    }

    /// A clock starting at 2026-01-01T00:00:00Z, a fixed and readable default for tests.
    pub fn at_2026() -> Self {
        Self::new(1_767_225_600_000)
    }

    /// This clock as a [`SharedClock`] (the clone shares time with `self`).
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }

    /// Moves the clock to `ms`. Moving backwards is ignored: time never runs back.
    pub fn set_ms(&self, ms: u64) {
        let prev = self.inner.now.fetch_max(ms, Ordering::SeqCst);
        if ms > prev {
            self.inner.changed.send_replace(ms);
        }
    }

    /// Advances the clock by `ms` milliseconds.
    pub fn advance_ms(&self, ms: u64) {
        let now = self.inner.now.fetch_add(ms, Ordering::SeqCst) + ms;
        self.inner.changed.send_replace(now);
    }

    /// Advances the clock by `secs` seconds.
    pub fn advance_secs(&self, secs: u64) {
        self.advance_ms(secs * 1000);
    }

    /// Advances the clock by `d`.
    pub fn advance(&self, d: Duration) {
        self.advance_ms(d.as_millis() as u64);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.inner.now.load(Ordering::SeqCst)
    }

    fn sleep_until(&self, deadline_ms: u64) -> Sleep {
        let mut rx = self.inner.changed.subscribe();
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            while inner.now.load(Ordering::SeqCst) < deadline_ms {
                if rx.changed().await.is_err() {
                    // The sender lives in `inner`, which we hold: unreachable, but never spin.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_advanced_past_their_deadline() {
        let clock = ManualClock::new(1_000);
        let sleeper = tokio::spawn(clock.sleep_until(5_000));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance_ms(3_000);
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance_ms(1_000);
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("sleeper woke")
            .expect("sleeper did not panic");
        assert_eq!(clock.now_ms(), 5_000);
    }

    #[test]
    fn manual_clock_never_runs_backwards() {
        let clock = ManualClock::new(10_000);
        clock.set_ms(5_000);
        assert_eq!(clock.now_ms(), 10_000);
        clock.set_ms(12_000);
        assert_eq!(clock.now_secs(), 12);
    }
}

//! Time as a port, so that tests can move it (poll deadlines, token expiry, download windows).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use time::{Duration, OffsetDateTime};

/// The source of "now" for every rule that depends on time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> OffsetDateTime;
}

/// The wall clock: what production and the dev server use.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that tests can move forward. It starts at the real time so that tokens it helps
/// mint still pass `jsonwebtoken`'s own expiry check, which reads the system clock.
#[derive(Debug, Clone)]
pub struct ManualClock {
    offset_ms: Arc<AtomicI64>,
    /// When set (not 0): the instant (epoch ms) the clock stopped at, so that only
    /// [`ManualClock::advance`] moves it. For tests whose outcome depends on how much real
    /// time passes between two steps (a cache's lifetime).
    frozen_ms: Arc<AtomicI64>,
}

impl ManualClock {
    pub fn new() -> Self {
        Self {
            offset_ms: Arc::new(AtomicI64::new(0)),
            frozen_ms: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Stops the clock at its current reading: from now on only `advance` moves it.
    pub fn freeze(&self) {
        let now = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        self.frozen_ms
            .store(i64::try_from(now).unwrap_or(i64::MAX), Ordering::SeqCst);
    }

    /// Moves every later reading of this clock (and of its clones) forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.whole_milliseconds()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        let frozen = self.frozen_ms.load(Ordering::SeqCst);
        let base = if frozen == 0 {
            OffsetDateTime::now_utc()
        } else {
            OffsetDateTime::UNIX_EPOCH + Duration::milliseconds(frozen)
        };
        base + Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }
}

pub type SharedClock = Arc<dyn Clock>;

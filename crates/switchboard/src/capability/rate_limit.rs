//! GCRA rate limiting per subscription: `per_second` sustained, `burst` at
//! once. Eight bytes of state (the theoretical arrival time), which is why it
//! is written here rather than taken from a crate built for shared limiters.

use switchboard_protocol::lambda::bounds;
use tokio::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct RateLimiter {
    /// Time between two messages at the sustained rate.
    interval: Duration,
    /// How far ahead of now the arrival time may run: `interval * burst`.
    tolerance: Duration,
    /// Theoretical arrival time of the next message.
    tat: Option<Instant>,
}

impl RateLimiter {
    /// `per_second` must be > 0 and `burst` >= 1 (checked where actions are
    /// parsed, with their maxima); any other value is clamped, never a panic.
    pub fn new(per_second: f64, burst: u32) -> Self {
        let per_second = per_second.clamp(1e-9, bounds::MAX_RATE_PER_SECOND);
        let interval = Duration::try_from_secs_f64(1.0 / per_second)
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_nanos(1));
        Self {
            interval,
            tolerance: interval.saturating_mul(burst.clamp(1, bounds::MAX_RATE_BURST)),
            tat: None,
        }
    }

    /// True if a message may pass at `now` (and counts it); false: drop it.
    pub fn check(&mut self, now: Instant) -> bool {
        let tat = self.tat.map_or(now, |t| t.max(now));
        let Some(next) = tat.checked_add(self.interval) else {
            return false;
        };
        if next.saturating_duration_since(now) > self.tolerance {
            return false;
        }
        self.tat = Some(next);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn burst_then_sustained_rate() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(10.0, 3);
        assert!(l.check(t0) && l.check(t0) && l.check(t0), "burst of 3");
        assert!(!l.check(t0), "4th at once is over the burst");
        assert!(!l.check(t0 + Duration::from_millis(50)), "not yet 100 ms");
        assert!(l.check(t0 + Duration::from_millis(100)));
        assert!(!l.check(t0 + Duration::from_millis(150)));
        // After a long quiet spell, the full burst is back, not more.
        let later = t0 + Duration::from_secs(10);
        assert!(l.check(later) && l.check(later) && l.check(later));
        assert!(!l.check(later));
    }

    proptest! {
        /// Over any window, passes <= burst + rate * window.
        #[test]
        fn never_exceeds_rate_plus_burst(rate in 1.0f64..1000.0, burst in 1u32..50,
                                         gaps in proptest::collection::vec(0u64..20_000_000, 1..500)) {
            let t0 = Instant::now();
            let mut l = RateLimiter::new(rate, burst);
            let mut now = t0;
            let mut passed = 0u64;
            for g in gaps {
                now += Duration::from_nanos(g);
                if l.check(now) { passed += 1; }
            }
            let window = now.duration_since(t0).as_secs_f64();
            prop_assert!(passed as f64 <= burst as f64 + rate * window + 1.0);
        }
    }
}

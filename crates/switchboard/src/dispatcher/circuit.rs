//! A per-app circuit breaker: after `threshold` failed lambda requests in a
//! row it opens and fails calls at once for `cooldown`, then lets one trial
//! request through (half-open); its outcome closes or reopens the circuit.

use parking_lot::Mutex;
use tokio::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

pub struct Circuit {
    state: Mutex<State>,
    threshold: u32,
    cooldown: Duration,
}

impl Circuit {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold,
            cooldown,
        }
    }

    /// May a request go out now? Moves an expired open circuit to half-open
    /// and lets exactly that one trial through.
    pub fn allow(&self) -> bool {
        let mut s = self.state.lock();
        match *s {
            State::Closed { .. } => true,
            State::Open { until } if Instant::now() >= until => {
                *s = State::HalfOpen;
                true
            }
            State::Open { .. } | State::HalfOpen => false,
        }
    }

    /// Records a request's outcome.
    pub fn record(&self, ok: bool) {
        let mut s = self.state.lock();
        *s = match (*s, ok) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            (_, false) => State::Open {
                until: Instant::now() + self.cooldown,
            },
        };
    }

    pub fn is_open(&self) -> bool {
        !matches!(*self.state.lock(), State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_then_half_opens_after_cooldown() {
        let c = Circuit::new(3, Duration::from_secs(5));
        for _ in 0..2 {
            assert!(c.allow());
            c.record(false);
        }
        assert!(c.allow(), "2 failures < 3: still closed");
        c.record(false);
        assert!(!c.allow(), "open after 3 failures in a row");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(c.allow(), "half-open: one trial");
        assert!(!c.allow(), "only one trial at a time");
        c.record(false);
        assert!(!c.allow(), "a failed trial reopens");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(c.allow());
        c.record(true);
        assert!(c.allow() && c.allow(), "a good trial closes it");
        assert!(!c.is_open());
    }

    #[test]
    fn success_resets_the_count() {
        let c = Circuit::new(2, Duration::from_secs(1));
        c.record(false);
        c.record(true);
        c.record(false);
        assert!(c.allow());
    }
}

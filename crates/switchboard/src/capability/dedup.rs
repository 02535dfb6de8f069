//! Dedup per subscription: drops a message whose `dedup_key` (or data hash)
//! was seen within the window. Memory is bounded by [`MAX_KEYS`] per
//! subscription: past it the oldest keys are forgotten early.

use std::collections::{HashSet, VecDeque};

use tokio::time::{Duration, Instant};

/// Most keys one subscription remembers.
pub const MAX_KEYS: usize = 4096;

#[derive(Debug)]
pub struct Dedup {
    window: Duration,
    seen: HashSet<u64>,
    order: VecDeque<(Instant, u64)>,
}

impl Dedup {
    /// A window past the lambda's bound is clamped to it.
    pub fn new(window: Duration) -> Self {
        Self {
            window: window.min(Duration::from_millis(
                switchboard_protocol::lambda::bounds::MAX_DEDUP_WINDOW_MS,
            )),
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// True if `key` is new within the window (and remembers it); false: a duplicate.
    pub fn check(&mut self, key: u64, now: Instant) -> bool {
        while let Some(&(t, k)) = self.order.front() {
            if now.saturating_duration_since(t) < self.window && self.order.len() < MAX_KEYS {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&k);
        }
        if !self.seen.insert(key) {
            return false;
        }
        self.order.push_back((now, key));
        true
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// A stable 64-bit hash of a dedup key or a message's data.
pub fn key_hash(bytes: &[u8]) -> u64 {
    // FNV-1a: stable across processes and fast on short keys.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_repeats_within_the_window_only() {
        let t0 = Instant::now();
        let mut d = Dedup::new(Duration::from_secs(60));
        assert!(d.check(1, t0));
        assert!(!d.check(1, t0 + Duration::from_secs(59)));
        assert!(d.check(2, t0 + Duration::from_secs(59)));
        assert!(d.check(1, t0 + Duration::from_secs(61)), "window passed");
    }

    #[test]
    fn memory_is_bounded() {
        let t0 = Instant::now();
        let mut d = Dedup::new(Duration::from_secs(3600));
        for k in 0..(MAX_KEYS as u64 * 3) {
            assert!(d.check(k, t0));
        }
        assert!(d.len() <= MAX_KEYS);
        assert_eq!(d.seen.len(), d.order.len());
    }

    #[test]
    fn hash_is_stable() {
        assert_eq!(key_hash(b"abc"), key_hash(b"abc"));
        assert_ne!(key_hash(b"abc"), key_hash(b"abd"));
    }
}

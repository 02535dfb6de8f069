//! What the shared brokers (NATS, Redis) have in common: the broker's epoch
//! as [`super::Broker::epoch`] lends it, the reconnection backoff, the wait
//! for the first connection and for a topic's confirmed interest.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::sync::watch;

use super::{Broker, BrokerError};
use crate::ops::supervise::{supervise, TaskKind};

/// Longest wait for the broker to confirm something (interest, a read).
pub(crate) const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// The broker cannot be reached (or did not answer in time).
pub(crate) fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

/// Spawns the broker's connection task (each `connection()` one run of it,
/// restarted if it panics) and waits a moment ([`CONFIRM_TIMEOUT`]) for the
/// first connection; the node runs (not ready) and keeps trying if the
/// broker (`name`, at `redacted_url`) is not there yet.
pub(crate) async fn start_supervised<B: Broker, Fut>(
    broker: B,
    connection: impl FnMut() -> Fut + Send + 'static,
    name: &str,
    redacted_url: &str,
) -> B
where
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(supervise(TaskKind::BrokerConnection, connection));
    let deadline = tokio::time::Instant::now() + CONFIRM_TIMEOUT;
    while !broker.is_ready() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !broker.is_ready() {
        tracing::warn!(url = %redacted_url, "{name} not reachable yet; not ready until it is");
    }
    broker
}

/// Waits (at most [`CONFIRM_TIMEOUT`]) until the broker confirmed the
/// subscription whose `confirmed` flag is given, if another stream's watch
/// of the topic is in flight: a position read before that could miss
/// messages.
pub(crate) async fn wait_confirmed(confirmed: Option<watch::Receiver<bool>>) {
    if let Some(mut rx) = confirmed {
        let _ = tokio::time::timeout(CONFIRM_TIMEOUT, rx.wait_for(|c| *c)).await;
    }
}

/// The broker's epoch. It changes only when the broker lost its store; each
/// value is leaked once (a few per process lifetime) so that `&str` can be
/// lent without a guard.
pub(crate) struct EpochCell(RwLock<(Arc<str>, &'static str, bool)>);

impl EpochCell {
    /// Before the first connection: cursors made now cannot be resumed.
    pub const PENDING: &'static str = "pending";

    pub fn new() -> Self {
        Self(RwLock::new((
            Arc::from(Self::PENDING),
            Self::PENDING,
            false,
        )))
    }

    pub fn get(&self) -> &'static str {
        self.0.read().1
    }

    pub fn arc(&self) -> Arc<str> {
        self.0.read().0.clone()
    }

    /// Sets the epoch read from the broker; true when it replaced another
    /// known epoch (the store was lost).
    pub fn set(&self, epoch: &str) -> bool {
        let mut cur = self.0.write();
        if &*cur.0 == epoch {
            return false;
        }
        let replaced = cur.2;
        let leaked: &'static str = Box::leak(epoch.to_owned().into_boxed_str());
        *cur = (Arc::from(epoch), leaked, true);
        replaced
    }
}

/// Longest pause between reconnection attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The pause before reconnection attempt `attempt` (0-based): 50 ms doubling
/// up to [`MAX_BACKOFF`], +-25% jitter so that nodes do not reconnect in step.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = 50u64.saturating_mul(1 << attempt.min(6)) as f64;
    let capped = base.min(MAX_BACKOFF.as_millis() as f64);
    Duration::from_millis((capped * (0.75 + rand::random::<f64>() * 0.5)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_changes_count_only_after_a_known_one() {
        let e = EpochCell::new();
        assert_eq!(e.get(), EpochCell::PENDING);
        assert!(!e.set("r1"), "the first epoch replaces nothing");
        assert!(!e.set("r1"));
        assert_eq!((e.get(), &*e.arc()), ("r1", "r1"));
        assert!(e.set("r2"), "a new epoch: the store was lost");
        assert_eq!(e.get(), "r2");
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let first = backoff(0);
        assert!(first >= Duration::from_millis(37) && first <= Duration::from_millis(63));
        // 50 ms doubled: 1.6 s at attempt 5, still under the cap...
        let fifth = backoff(5);
        assert!(
            fifth >= Duration::from_millis(1200) && fifth <= Duration::from_millis(2000),
            "{fifth:?}"
        );
        // ...which holds from attempt 6 on.
        for attempt in [6, 7, 20, u32::MAX] {
            let d = backoff(attempt);
            assert!(
                d >= MAX_BACKOFF * 3 / 4 && d <= MAX_BACKOFF * 5 / 4,
                "{attempt}: {d:?}"
            );
        }
    }
}

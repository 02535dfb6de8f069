//! Timers for every stream of the node, on a few shared `DelayQueue` tasks
//! (one per core), not a task per timer: a million timers cost about a
//! hundred bytes each. A stream holds an `Arc<TimerToken>` per timer; the
//! queue holds a `Weak`, so dropping the token (cancel, replace, stream gone)
//! is the whole cancel: the entry dies when it next comes due. No input can
//! stop a shard: delays are bounded and checked before they reach its
//! queue, and a shard that panics anyway restarts with its pending timers.

use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use switchboard_protocol::Topic;
use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};
use tokio_util::time::DelayQueue;

use crate::ops::supervise::{supervise, Kept, TaskKind};
use crate::stream::outbox::Outbox;

/// What a timer is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerKind {
    /// A lambda's `timer` action.
    Named(Arc<str>),
    /// A subscription's batch reached its `max_delay_ms`.
    BatchDue(Topic),
}

/// One live timer; dropping it cancels the timer.
pub struct TimerToken {
    pub id: u64,
    pub slot: u32,
    pub kind: TimerKind,
    outbox: Arc<Outbox>,
}

struct Insert {
    token: Weak<TimerToken>,
    at: Instant,
    every: Option<Duration>,
}

/// Commands queued per shard before `set` refuses (counted by the caller).
const QUEUE: usize = 65_536;

/// Longest delay a timer may have. The lambda's bounds are far lower (24 h,
/// `switchboard_protocol::lambda::bounds`); this one keeps the shard's
/// `DelayQueue`, which panics past about two years, safe from any caller.
pub const MAX_DELAY: Duration = Duration::from_secs(365 * 24 * 3600);

/// The node's timer service: a cheap handle to the shard tasks.
pub struct Timers {
    shards: Vec<mpsc::Sender<Insert>>,
    next: AtomicUsize,
    ids: AtomicU64,
}

/// Why a timer was not armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimerError {
    #[error("timer queue is full")]
    Full,
    #[error("timer delay is over the {} s maximum", MAX_DELAY.as_secs())]
    TooLong,
}

/// A shard's state, kept across restarts of its task: the pending timers
/// survive a panic.
struct Shard {
    rx: mpsc::Receiver<Insert>,
    queue: DelayQueue<(Weak<TimerToken>, Option<Duration>)>,
}

impl Timers {
    /// Starts `shards` supervised timer tasks on the current runtime.
    pub fn start(shards: usize) -> Self {
        let shards = (0..shards.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE);
                let kept = Kept::new(Shard {
                    rx,
                    queue: DelayQueue::new(),
                });
                tokio::spawn(supervise(TaskKind::Timer, move || {
                    let kept = kept.clone();
                    async move { kept.hold().await.run().await }
                }));
                tx
            })
            .collect();
        Self {
            shards,
            next: AtomicUsize::new(0),
            ids: AtomicU64::new(1),
        }
    }

    /// Arms a timer: first fire after `after`, then every `every` if given.
    pub fn set(
        &self,
        outbox: &Arc<Outbox>,
        slot: u32,
        kind: TimerKind,
        after: Duration,
        every: Option<Duration>,
    ) -> Result<Arc<TimerToken>, TimerError> {
        if after > MAX_DELAY || every.is_some_and(|e| e > MAX_DELAY) {
            return Err(TimerError::TooLong);
        }
        let at = Instant::now()
            .checked_add(after)
            .ok_or(TimerError::TooLong)?;
        let token = Arc::new(TimerToken {
            id: self.ids.fetch_add(1, Ordering::Relaxed),
            slot,
            kind,
            outbox: outbox.clone(),
        });
        let shard = self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        let insert = Insert {
            token: Arc::downgrade(&token),
            at,
            every,
        };
        self.shards[shard]
            .try_send(insert)
            .map_err(|_| TimerError::Full)?;
        Ok(token)
    }
}

impl Shard {
    async fn run(&mut self) {
        loop {
            tokio::select! {
                insert = self.rx.recv() => match insert {
                    Some(i) => self.insert(i.token, i.every, i.at),
                    None => break,
                },
                Some(expired) = poll_fn(|cx| self.queue.poll_expired(cx)), if !self.queue.is_empty() => {
                    let deadline = expired.deadline();
                    let (weak, every) = expired.into_inner();
                    let Some(token) = weak.upgrade() else { continue };
                    token.outbox.push_timer(token.slot, token.id);
                    if let Some(every) = every {
                        // Fixed rate; a shard that fell behind skips ahead instead of bursting.
                        let now = Instant::now();
                        let next = deadline.checked_add(every).filter(|n| *n > now);
                        let Some(next) = next.or_else(|| now.checked_add(every)) else {
                            continue;
                        };
                        self.insert(weak, Some(every), next);
                    }
                }
            }
        }
    }

    /// Queues a timer unless its deadline is past what the queue holds
    /// ([`Timers::set`] refuses those already; this shard must not panic).
    fn insert(&mut self, token: Weak<TimerToken>, every: Option<Duration>, at: Instant) {
        if at.saturating_duration_since(Instant::now()) > MAX_DELAY {
            tracing::warn!("timer past the maximum delay dropped");
            return;
        }
        self.queue.insert_at((token, every), at);
    }
}

/// Wall-clock milliseconds since the Unix epoch, for `fired_at_ms`.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::ops::config::SlowConsumer;
    use crate::stream::outbox::Inbound;
    use std::collections::VecDeque;

    /// The ids of the timers that fired since the last call.
    pub(in crate::capability) fn fired(o: &Outbox) -> Vec<u64> {
        let mut q = VecDeque::new();
        o.take(&mut q);
        q.into_iter()
            .filter_map(|i| match i {
                Inbound::Timer { id, .. } => Some(id),
                _ => None,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn one_shot_periodic_and_cancel_by_drop() {
        let timers = Timers::start(2);
        let o = Arc::new(Outbox::new(16, SlowConsumer::Close));
        let once = timers
            .set(
                &o,
                1,
                TimerKind::Named("a".into()),
                Duration::from_millis(100),
                None,
            )
            .unwrap();
        let every = timers
            .set(
                &o,
                1,
                TimerKind::Named("b".into()),
                Duration::from_millis(250),
                Some(Duration::from_millis(250)),
            )
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(fired(&o).is_empty());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(fired(&o), [once.id]);
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            fired(&o),
            [every.id, every.id, every.id],
            "at 250, 500, 750"
        );
        drop(every);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(fired(&o).is_empty(), "dropped token: no more fires");
    }

    /// The cause of "one huge `after_ms` stops every app's timers": a delay
    /// past the `DelayQueue`'s two years panicked the shared shard task.
    #[tokio::test(start_paused = true)]
    async fn absurd_delays_are_refused_and_the_shard_keeps_firing() {
        let timers = Timers::start(1);
        let o = Arc::new(Outbox::new(16, SlowConsumer::Close));
        let named = || TimerKind::Named("x".into());
        for d in [
            Duration::MAX,
            Duration::from_millis(u64::MAX),
            Duration::from_secs(3 * 365 * 24 * 3600),
            MAX_DELAY + Duration::from_millis(1),
        ] {
            assert_eq!(
                timers.set(&o, 1, named(), d, None).err(),
                Some(TimerError::TooLong)
            );
            assert_eq!(
                timers
                    .set(&o, 1, named(), Duration::from_millis(1), Some(d))
                    .err(),
                Some(TimerError::TooLong)
            );
        }
        let far = timers
            .set(&o, 1, named(), MAX_DELAY, Some(MAX_DELAY))
            .unwrap();
        let soon = timers
            .set(&o, 1, named(), Duration::from_millis(100), None)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(fired(&o), [soon.id], "the same shard still fires");
        drop(far);
    }
}

//! Timers for every stream of the node, on a few shared `DelayQueue` tasks
//! (one per core), not a task per timer: a million timers cost about a
//! hundred bytes each. A stream holds an `Arc<TimerToken>` per timer; the
//! queue holds a `Weak`, so dropping the token (cancel, replace, stream gone)
//! is the whole cancel: the entry dies when it next comes due.

use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use switchboard_protocol::Topic;
use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};
use tokio_util::time::DelayQueue;

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

/// The node's timer service: a cheap handle to the shard tasks.
pub struct Timers {
    shards: Vec<mpsc::Sender<Insert>>,
    next: AtomicUsize,
    ids: AtomicU64,
}

/// The timer queue of a shard is full.
#[derive(Debug, thiserror::Error)]
#[error("timer queue is full")]
pub struct Full;

impl Timers {
    /// Starts `shards` timer tasks on the current runtime.
    pub fn start(shards: usize) -> Self {
        let shards = (0..shards.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(run(rx));
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
    ) -> Result<Arc<TimerToken>, Full> {
        let token = Arc::new(TimerToken {
            id: self.ids.fetch_add(1, Ordering::Relaxed),
            slot,
            kind,
            outbox: outbox.clone(),
        });
        let shard = self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        let insert = Insert {
            token: Arc::downgrade(&token),
            at: Instant::now() + after,
            every,
        };
        self.shards[shard].try_send(insert).map_err(|_| Full)?;
        Ok(token)
    }
}

async fn run(mut rx: mpsc::Receiver<Insert>) {
    let mut queue: DelayQueue<(Weak<TimerToken>, Option<Duration>)> = DelayQueue::new();
    loop {
        tokio::select! {
            insert = rx.recv() => match insert {
                Some(i) => {
                    queue.insert_at((i.token, i.every), i.at);
                }
                None => break,
            },
            Some(expired) = poll_fn(|cx| queue.poll_expired(cx)), if !queue.is_empty() => {
                let deadline = expired.deadline();
                let (weak, every) = expired.into_inner();
                let Some(token) = weak.upgrade() else { continue };
                token.outbox.push_timer(token.slot, token.id);
                if let Some(every) = every {
                    // Fixed rate; a shard that fell behind skips ahead instead of bursting.
                    let now = Instant::now();
                    let mut next = deadline + every;
                    if next <= now {
                        next = now + every;
                    }
                    queue.insert_at((weak, Some(every)), next);
                }
            }
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch, for `fired_at_ms`.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::config::SlowConsumer;
    use crate::stream::outbox::Inbound;
    use std::collections::VecDeque;

    fn fired(o: &Outbox) -> Vec<u64> {
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
}

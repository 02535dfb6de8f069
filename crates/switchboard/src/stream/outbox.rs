//! A connection's inbox: topic messages from the router and lambda answers
//! from the dispatcher, waiting for the connection's task. Topic messages are
//! bounded (slow-consumer policy applies past the bound); answers are not,
//! since each is owed to a stream with one event in flight.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::broker::Message;
use crate::dispatcher::LambdaOutcome;
use crate::ops::config::SlowConsumer;
use switchboard_protocol::Topic;

pub enum Inbound {
    Message {
        slot: u32,
        msg: Arc<Message>,
    },
    /// Messages of `topic` were lost before reaching this node (broker outage).
    Gap {
        slot: u32,
        topic: Topic,
    },
    /// A timer came due (see `capability::timer_shards`).
    Timer {
        slot: u32,
        id: u64,
    },
    Lambda {
        slot: u32,
        outcome: LambdaOutcome,
    },
}

pub struct Outbox {
    inner: Mutex<Inner>,
    /// Wakes the connection's task: something was queued, or the policy
    /// `close` refused a message (the task may then be stuck in a write to a
    /// peer that stopped reading, waiting in [`Outbox::overflowed`]). The
    /// task waits in one place at a time, and both waits re-check the state.
    notify: Notify,
    capacity: usize,
    policy: SlowConsumer,
    /// This connection's events waiting for or in a lambda call (one
    /// [`JobTicket`] each), and the count at which it stops reading.
    jobs: AtomicUsize,
    job_limit: usize,
    /// Set once the connection is gone: its queued events can be shed.
    gone: AtomicBool,
}

/// Held by each event of a connection in a dispatcher; dropped when the
/// event's call is over (or the event shed). Dropping the one that brings
/// the connection back under its limit wakes the connection's task.
pub struct JobTicket(Arc<Outbox>);

impl Drop for JobTicket {
    fn drop(&mut self) {
        let before = self.0.jobs.fetch_sub(1, Ordering::AcqRel);
        if before == self.0.job_limit {
            self.0.notify.notify_one();
        }
    }
}

#[derive(Default)]
struct Inner {
    items: VecDeque<Inbound>,
    messages: usize,
    overflowed: bool,
    /// Streams and topics that lost their oldest queued messages (drop_oldest), and how many.
    dropped: Vec<(u32, Topic, u64)>,
    closed: bool,
}

/// What one [`Outbox::take`] found.
pub struct Taken {
    /// Topic messages were refused because the connection fell behind (policy `close`).
    pub overflowed: bool,
    /// Oldest messages dropped to make room (policy `drop_oldest`), counted
    /// per stream and topic: each stream gets a `gap`.
    pub dropped: Vec<(u32, Topic, u64)>,
}

impl Outbox {
    pub fn new(capacity: usize, policy: SlowConsumer) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            capacity,
            policy,
            jobs: AtomicUsize::new(0),
            job_limit: usize::MAX,
            gone: AtomicBool::new(false),
        }
    }

    /// The count of lambda events at which [`Outbox::jobs_full`] holds.
    pub fn with_job_limit(mut self, limit: usize) -> Self {
        self.job_limit = limit;
        self
    }

    /// A ticket for one more event of this connection in a dispatcher.
    pub fn ticket(self: &Arc<Self>) -> JobTicket {
        self.jobs.fetch_add(1, Ordering::AcqRel);
        JobTicket(self.clone())
    }

    /// The connection has its share of lambda events out: it reads no more
    /// client frames until one ends.
    pub fn jobs_full(&self) -> bool {
        self.jobs.load(Ordering::Acquire) >= self.job_limit
    }

    /// The connection is gone (its events answer no one).
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// Queues a topic message; past the bound the connection is marked overflowed.
    pub fn push_message(&self, slot: u32, msg: Arc<Message>) {
        let mut inner = self.inner.lock();
        if inner.closed {
            return;
        }
        if inner.messages >= self.capacity {
            match self.policy {
                SlowConsumer::Close => {
                    inner.overflowed = true;
                }
                SlowConsumer::DropOldest => {
                    let oldest = inner
                        .items
                        .iter()
                        .position(|i| matches!(i, Inbound::Message { .. }));
                    if let Some(Inbound::Message { slot, msg }) =
                        oldest.and_then(|i| inner.items.remove(i))
                    {
                        inner.messages -= 1;
                        match inner
                            .dropped
                            .iter_mut()
                            .find(|(s, t, _)| *s == slot && *t == msg.topic)
                        {
                            Some((_, _, n)) => *n += 1,
                            None => inner.dropped.push((slot, msg.topic.clone(), 1)),
                        }
                    }
                }
            }
        }
        if inner.messages < self.capacity {
            inner.messages += 1;
            inner.items.push_back(Inbound::Message { slot, msg });
        }
        let wake = inner.items.len() == 1 || inner.overflowed;
        drop(inner);
        if wake {
            self.notify.notify_one();
        }
    }

    pub fn push_lambda(&self, slot: u32, outcome: LambdaOutcome) {
        self.push_control(Inbound::Lambda { slot, outcome });
    }

    pub fn push_gap(&self, slot: u32, topic: Topic) {
        self.push_control(Inbound::Gap { slot, topic });
    }

    pub fn push_timer(&self, slot: u32, id: u64) {
        self.push_control(Inbound::Timer { slot, id });
    }

    /// Queues an item that is not a topic message: never refused while open.
    fn push_control(&self, item: Inbound) {
        let mut inner = self.inner.lock();
        if inner.closed {
            return;
        }
        inner.items.push_back(item);
        let wake = inner.items.len() == 1;
        drop(inner);
        if wake {
            self.notify.notify_one();
        }
    }

    /// Waits until something is queued.
    pub async fn ready(&self) {
        if !self.inner.lock().items.is_empty() {
            return;
        }
        self.notify.notified().await;
    }

    /// Waits until the policy `close` refused a message. Raced against a
    /// blocked write, so that a slow consumer is closed for falling behind
    /// long before the write timeout would call it dead.
    pub async fn overflowed(&self) {
        loop {
            if self.inner.lock().overflowed {
                return;
            }
            // A notification between the check and here is kept as a permit.
            self.notify.notified().await;
        }
    }

    /// Moves everything queued into `into`.
    pub fn take(&self, into: &mut VecDeque<Inbound>) -> Taken {
        let mut inner = self.inner.lock();
        std::mem::swap(&mut inner.items, into);
        inner.messages = 0;
        Taken {
            overflowed: std::mem::take(&mut inner.overflowed),
            dropped: std::mem::take(&mut inner.dropped),
        }
    }

    /// The connection is gone: drop what is queued and refuse more.
    pub fn close(&self) {
        let mut inner = self.inner.lock();
        inner.closed = true;
        inner.items = VecDeque::new();
        drop(inner);
        self.gone.store(true, Ordering::Release);
        if self.jobs.load(Ordering::Acquire) > 0 {
            crate::dispatcher::queue::connection_gone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn msg(topic: &str, id: u64) -> Arc<Message> {
        let data = RawValue::from_string(id.to_string()).unwrap();
        Arc::new(Message::new(
            Topic::new(topic).unwrap(),
            Arc::from(id.to_string()),
            data,
            Arc::from("e"),
            None,
        ))
    }

    fn ids(q: &VecDeque<Inbound>) -> Vec<String> {
        q.iter()
            .filter_map(|i| match i {
                Inbound::Message { msg, .. } => Some(msg.id.to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn close_policy_marks_overflow_and_keeps_the_bound() {
        let o = Outbox::new(2, SlowConsumer::Close);
        for id in 1..=5 {
            o.push_message(0, msg("t", id));
        }
        let mut q = VecDeque::new();
        let t = o.take(&mut q);
        assert!(t.overflowed);
        assert_eq!(ids(&q), ["1", "2"]);
        assert!(!o.take(&mut VecDeque::new()).overflowed, "taken once");
    }

    #[test]
    fn drop_oldest_keeps_the_newest_and_names_the_gap() {
        let o = Outbox::new(2, SlowConsumer::DropOldest);
        for id in 1..=5 {
            o.push_message(7, msg("t", id));
        }
        let mut q = VecDeque::new();
        let t = o.take(&mut q);
        assert!(!t.overflowed);
        assert_eq!(ids(&q), ["4", "5"]);
        assert_eq!(t.dropped.len(), 1);
        assert_eq!(
            (t.dropped[0].0, t.dropped[0].1.as_str(), t.dropped[0].2),
            (7, "t", 3)
        );
    }

    #[test]
    fn closed_outbox_refuses_everything() {
        let o = Outbox::new(2, SlowConsumer::Close);
        o.close();
        o.push_message(0, msg("t", 1));
        let mut q = VecDeque::new();
        o.take(&mut q);
        assert!(q.is_empty());
    }
}

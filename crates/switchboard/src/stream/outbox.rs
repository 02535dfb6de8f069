//! A connection's inbox: topic messages from the router and lambda answers
//! from the dispatcher, waiting for the connection's task. Topic messages are
//! bounded (slow-consumer policy applies past the bound); answers are not,
//! since each is owed to a stream with one event in flight.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::broker::Message;
use crate::dispatcher::LambdaOutcome;

pub enum Inbound {
    Message { slot: u32, msg: Arc<Message> },
    Lambda { slot: u32, outcome: LambdaOutcome },
}

pub struct Outbox {
    inner: Mutex<Inner>,
    notify: Notify,
    capacity: usize,
}

#[derive(Default)]
struct Inner {
    items: VecDeque<Inbound>,
    messages: usize,
    overflowed: bool,
    closed: bool,
}

/// What one [`Outbox::take`] found.
pub struct Taken {
    /// Topic messages were refused because the connection fell behind.
    pub overflowed: bool,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            capacity,
        }
    }

    /// Queues a topic message; past the bound the connection is marked overflowed.
    pub fn push_message(&self, slot: u32, msg: Arc<Message>) {
        let mut inner = self.inner.lock();
        if inner.closed {
            return;
        }
        if inner.messages >= self.capacity {
            inner.overflowed = true;
        } else {
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
        let mut inner = self.inner.lock();
        if inner.closed {
            return;
        }
        inner.items.push_back(Inbound::Lambda { slot, outcome });
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

    /// Moves everything queued into `into`.
    pub fn take(&self, into: &mut VecDeque<Inbound>) -> Taken {
        let mut inner = self.inner.lock();
        std::mem::swap(&mut inner.items, into);
        inner.messages = 0;
        Taken {
            overflowed: std::mem::take(&mut inner.overflowed),
        }
    }

    /// The connection is gone: drop what is queued and refuse more.
    pub fn close(&self) {
        let mut inner = self.inner.lock();
        inner.closed = true;
        inner.items = VecDeque::new();
    }
}

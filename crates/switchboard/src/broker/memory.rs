//! The embedded broker: one process, per-topic sequences, bounded history
//! (per topic, and a node total that drops the node's oldest messages
//! first), publish dedup. Delivery happens under the topic's lock, so every
//! subscriber sees a topic's messages in id order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use switchboard_protocol::publish::Publication;
use switchboard_protocol::Topic;
use tokio::time::{Duration, Instant};

pub use super::history::{HistoryLimits, HistoryPolicy};
use super::{BoxFuture, Broker, BrokerError, History, Message};
use crate::ops::supervise::{supervise, TaskKind};
use crate::router::TopicRouter;

type SharedLog = Arc<Mutex<TopicLog>>;

pub struct MemoryBroker {
    epoch: Arc<str>,
    router: Arc<TopicRouter>,
    topics: RwLock<HashMap<Topic, SharedLog>>,
    policy: HistoryPolicy,
    node: NodeHistory,
    next_uid: AtomicU64,
    dedup_window: Duration,
}

#[derive(Default)]
struct TopicLog {
    /// Names this log in the node's index.
    uid: u64,
    limits: HistoryLimits,
    seq: u64,
    /// Newest last; each with its arrival time.
    history: VecDeque<(Instant, Arc<Message>)>,
    /// Bytes of `data` in `history` (the per-topic bound).
    history_bytes: usize,
    /// The arrival time under which the node's index holds this log: the
    /// oldest retained message's, when the index was last told.
    indexed: Option<Instant>,
    /// dedup_key -> (id, first seen), oldest first in `dedup_order`.
    dedup: HashMap<String, (Arc<str>, Instant)>,
    dedup_order: VecDeque<(Instant, String)>,
}

/// The history of every topic together: its cost in bytes, and the topics
/// with history ordered by their oldest retained message, so that the node
/// total drops the node's oldest messages first in O(log topics) each.
///
/// Lock order: a topic's lock, then `by_oldest`; nothing is locked while
/// `by_oldest` is held.
struct NodeHistory {
    max_total: usize,
    total: AtomicUsize,
    by_oldest: Mutex<BTreeMap<(Instant, u64), SharedLog>>,
}

/// What a retained message counts against the node total besides its data,
/// topic, id and dedup key: the message itself, its `Arc`, its place in the
/// topic's queue and the allocator's rounding.
const MESSAGE_OVERHEAD: usize = std::mem::size_of::<Message>() + 64;

/// One retained message's cost against the node total, in bytes.
fn cost(m: &Message) -> usize {
    m.data.get().len()
        + m.topic.as_str().len()
        + m.id.len()
        + m.dedup_key.as_ref().map_or(0, |k| k.len())
        + MESSAGE_OVERHEAD
}

impl MemoryBroker {
    pub fn new(router: Arc<TopicRouter>, policy: HistoryPolicy, dedup_window: Duration) -> Self {
        let epoch: Arc<str> = Arc::from(format!("m{:x}", rand::random::<u32>()));
        Self {
            epoch,
            router,
            topics: RwLock::new(HashMap::new()),
            node: NodeHistory {
                max_total: policy.max_total_bytes,
                total: AtomicUsize::new(0),
                by_oldest: Mutex::new(BTreeMap::new()),
            },
            policy,
            next_uid: AtomicU64::new(1),
            dedup_window,
        }
    }

    /// Bytes the history of every topic holds now (each message counts its topic, data and dedup key, plus a fixed overhead: `cost`).
    pub fn history_bytes(&self) -> usize {
        self.node.total.load(Ordering::Relaxed)
    }

    /// Frees what quiet topics hold past their bounds (old history, expired
    /// dedup keys). A topic keeps only its sequence (tens of bytes), so its
    /// ids never restart while this process lives.
    pub fn sweep(&self) {
        let now = Instant::now();
        let logs: Vec<_> = self.topics.read().values().cloned().collect();
        for shared in logs {
            let mut log = shared.lock();
            let freed = log.expire(now);
            self.node.settle(&shared, &mut log, 0, freed);
            log.expire_dedup(now, self.dedup_window);
            if log.history.is_empty() {
                log.history = VecDeque::new();
            }
            if log.dedup.is_empty() {
                log.dedup = HashMap::new();
                log.dedup_order = VecDeque::new();
            }
        }
    }

    /// Sweeps every `every` while the broker lives.
    pub fn start_sweeper(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(supervise(TaskKind::Sweeper, move || {
            let weak = weak.clone();
            async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(broker) = weak.upgrade() else { break };
                    broker.sweep();
                }
            }
        }));
    }

    fn log(&self, topic: &Topic) -> SharedLog {
        if let Some(l) = self.topics.read().get(topic) {
            return l.clone();
        }
        self.topics
            .write()
            .entry(topic.clone())
            .or_insert_with(|| {
                Arc::new(Mutex::new(TopicLog {
                    uid: self.next_uid.fetch_add(1, Ordering::Relaxed),
                    limits: self.policy.limits_for(topic.as_str()),
                    ..TopicLog::default()
                }))
            })
            .clone()
    }

    fn publish_one(&self, p: Publication) -> Arc<str> {
        let shared = self.log(&p.topic);
        let id = {
            let mut log = shared.lock();
            let now = Instant::now();
            log.expire_dedup(now, self.dedup_window);
            if let Some(key) = &p.dedup_key {
                if let Some((id, _)) = log.dedup.get(key) {
                    return id.clone();
                }
            }
            log.seq += 1;
            let id: Arc<str> = Arc::from(log.seq.to_string());
            if let Some(key) = &p.dedup_key {
                log.dedup.insert(key.clone(), (id.clone(), now));
                log.dedup_order.push_back((now, key.clone()));
            }
            let dedup_key = p.dedup_key.map(String::into_boxed_str);
            let msg = Arc::new(
                Message::new(p.topic, id.clone(), p.data, self.epoch.clone(), dedup_key)
                    .with_hop(p.hop),
            );
            let added = cost(&msg);
            let freed = log.remember(now, msg.clone());
            self.node.settle(&shared, &mut log, added, freed);
            // Still under the topic's lock: delivery order is id order.
            self.router.deliver(&msg);
            id
        };
        self.node.evict_over_total();
        id
    }
}

impl NodeHistory {
    /// Under `log`'s lock, after its history changed: counts what it added
    /// and freed, and files it under its (new) oldest message.
    fn settle(&self, shared: &SharedLog, log: &mut TopicLog, added: usize, freed: usize) {
        if added > 0 {
            self.total.fetch_add(added, Ordering::Relaxed);
        }
        if freed > 0 {
            self.total.fetch_sub(freed, Ordering::Relaxed);
        }
        let oldest = log.history.front().map(|(t, _)| *t);
        if oldest == log.indexed {
            return;
        }
        let mut index = self.by_oldest.lock();
        if let Some(t) = log.indexed.take() {
            index.remove(&(t, log.uid));
        }
        if let Some(t) = oldest {
            index.insert((t, log.uid), shared.clone());
        }
        log.indexed = oldest;
    }

    /// While the node's history is over its total, drops the node's oldest
    /// message (the front of the topic filed first). Called with no topic locked.
    fn evict_over_total(&self) {
        while self.total.load(Ordering::Relaxed) > self.max_total {
            let first = self
                .by_oldest
                .lock()
                .first_key_value()
                .map(|(k, v)| (*k, v.clone()));
            let Some(((t, _), shared)) = first else {
                return;
            };
            let mut log = shared.lock();
            if log.indexed != Some(t) {
                // Its history changed meanwhile, and was filed anew.
                continue;
            }
            let freed = log.pop_oldest();
            self.settle(&shared, &mut log, 0, freed);
        }
    }
}

impl TopicLog {
    fn expire_dedup(&mut self, now: Instant, window: Duration) {
        while let Some((t, _)) = self.dedup_order.front() {
            if now.duration_since(*t) < window {
                break;
            }
            if let Some((_, key)) = self.dedup_order.pop_front() {
                self.dedup.remove(&key);
            }
        }
    }

    /// Keeps `msg`; returns the cost of what the topic's bounds then dropped.
    fn remember(&mut self, now: Instant, msg: Arc<Message>) -> usize {
        self.history_bytes += msg.data.get().len();
        self.history.push_back((now, msg));
        self.expire(now)
    }

    /// Drops the oldest messages past the topic's bounds; returns their cost.
    fn expire(&mut self, now: Instant) -> usize {
        let mut freed = 0;
        while let Some((t, _)) = self.history.front() {
            let over = self.history.len() > self.limits.max_messages
                || self.history_bytes > self.limits.max_bytes
                || now.duration_since(*t) > self.limits.max_age;
            if !over {
                break;
            }
            freed += self.pop_oldest();
        }
        freed
    }

    /// Drops the oldest retained message; returns its cost (0 if none).
    fn pop_oldest(&mut self) -> usize {
        let Some((_, m)) = self.history.pop_front() else {
            return 0;
        };
        self.history_bytes -= m.data.get().len();
        cost(&m)
    }

    fn after(&self, after: &str) -> History {
        let Ok(after) = after.parse::<u64>() else {
            return History::empty(true);
        };
        if after > self.seq {
            // A position this store never gave: it is not the same store.
            return History::empty(true);
        }
        let oldest = self.seq + 1 - self.history.len() as u64;
        let skip = (after + 1).saturating_sub(oldest) as usize;
        History {
            messages: self
                .history
                .iter()
                .skip(skip)
                .map(|(_, m)| m.clone())
                .collect(),
            // Dropped by the topic's bounds or the node total alike.
            truncated: after + 1 < oldest,
        }
    }
}

impl Broker for MemoryBroker {
    fn epoch(&self) -> &str {
        &self.epoch
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn history_bytes(&self) -> Option<usize> {
        Some(MemoryBroker::history_bytes(self))
    }

    fn publish(
        &self,
        messages: Vec<Publication>,
    ) -> BoxFuture<'_, Result<Vec<Arc<str>>, BrokerError>> {
        let ids = messages.into_iter().map(|p| self.publish_one(p)).collect();
        Box::pin(async move { Ok(ids) })
    }

    fn watch(&self, _topic: &Topic) -> BoxFuture<'_, Result<(), BrokerError>> {
        // In one process every published message reaches the router; the
        // router ignores topics without local streams.
        Box::pin(async { Ok(()) })
    }

    fn unwatch(&self, _topic: &Topic) {}

    fn position(&self, topic: &Topic) -> BoxFuture<'_, Result<Arc<str>, BrokerError>> {
        let seq = self
            .topics
            .read()
            .get(topic)
            .map(|l| l.lock().seq)
            .unwrap_or(0);
        Box::pin(async move { Ok(Arc::from(seq.to_string())) })
    }

    fn history<'a>(
        &'a self,
        topic: &'a Topic,
        after: &'a str,
    ) -> BoxFuture<'a, Result<History, BrokerError>> {
        let shared = self.topics.read().get(topic).cloned();
        let found = match shared {
            Some(shared) => {
                let mut log = shared.lock();
                let freed = log.expire(Instant::now());
                self.node.settle(&shared, &mut log, 0, freed);
                log.after(after)
            }
            None => TopicLog::default().after(after),
        };
        Box::pin(async move { Ok(found) })
    }
}

#[cfg(test)]
mod tests;

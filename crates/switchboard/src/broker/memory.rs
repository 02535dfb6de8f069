//! The embedded broker: one process, per-topic sequences, bounded history,
//! publish dedup. Delivery happens under the topic's lock, so every
//! subscriber sees a topic's messages in id order.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use switchboard_protocol::publish::Publication;
use switchboard_protocol::Topic;
use tokio::time::{Duration, Instant};

use super::{BoxFuture, Broker, BrokerError, History, Message};
use crate::ops::supervise::{supervise, TaskKind};
use crate::router::TopicRouter;

/// How much history each topic keeps (the smallest bound wins).
#[derive(Debug, Clone)]
pub struct HistoryLimits {
    pub max_messages: usize,
    pub max_bytes: usize,
    pub max_age: Duration,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self {
            max_messages: 1_000,
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(600),
        }
    }
}

pub struct MemoryBroker {
    epoch: Arc<str>,
    router: Arc<TopicRouter>,
    topics: RwLock<HashMap<Topic, Arc<Mutex<TopicLog>>>>,
    history: HistoryLimits,
    dedup_window: Duration,
}

#[derive(Default)]
struct TopicLog {
    seq: u64,
    /// Newest last; each with its arrival time.
    history: VecDeque<(Instant, Arc<Message>)>,
    history_bytes: usize,
    /// dedup_key -> (id, first seen), oldest first in `dedup_order`.
    dedup: HashMap<String, (Arc<str>, Instant)>,
    dedup_order: VecDeque<(Instant, String)>,
}

impl MemoryBroker {
    pub fn new(router: Arc<TopicRouter>, history: HistoryLimits, dedup_window: Duration) -> Self {
        let epoch: Arc<str> = Arc::from(format!("m{:x}", rand::random::<u32>()));
        Self {
            epoch,
            router,
            topics: RwLock::new(HashMap::new()),
            history,
            dedup_window,
        }
    }

    /// Frees what quiet topics hold past their bounds (old history, expired
    /// dedup keys). A topic keeps only its sequence (tens of bytes), so its
    /// ids never restart while this process lives.
    pub fn sweep(&self) {
        let now = Instant::now();
        let logs: Vec<_> = self.topics.read().values().cloned().collect();
        for log in logs {
            let mut log = log.lock();
            log.expire(now, &self.history);
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

    fn log(&self, topic: &Topic) -> Arc<Mutex<TopicLog>> {
        if let Some(l) = self.topics.read().get(topic) {
            return l.clone();
        }
        self.topics
            .write()
            .entry(topic.clone())
            .or_default()
            .clone()
    }

    fn publish_one(&self, p: Publication) -> Arc<str> {
        let log = self.log(&p.topic);
        let mut log = log.lock();
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

        log.remember(now, msg.clone(), &self.history);
        // Still under the topic's lock: delivery order is id order.
        self.router.deliver(&msg);
        id
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

    fn remember(&mut self, now: Instant, msg: Arc<Message>, limits: &HistoryLimits) {
        self.history_bytes += msg.data.get().len();
        self.history.push_back((now, msg));
        self.expire(now, limits);
    }

    fn expire(&mut self, now: Instant, limits: &HistoryLimits) {
        while let Some((t, m)) = self.history.front() {
            let over = self.history.len() > limits.max_messages
                || self.history_bytes > limits.max_bytes
                || now.duration_since(*t) > limits.max_age;
            if !over {
                break;
            }
            self.history_bytes -= m.data.get().len();
            self.history.pop_front();
        }
    }
}

impl TopicLog {
    fn after(&self, after: &str) -> History {
        let Ok(after) = after.parse::<u64>() else {
            return History {
                messages: Vec::new(),
                truncated: true,
            };
        };
        if after > self.seq {
            // A position this store never gave: it is not the same store.
            return History {
                messages: Vec::new(),
                truncated: true,
            };
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
        let found = match self.topics.read().get(topic) {
            Some(log) => {
                let mut log = log.lock();
                log.expire(Instant::now(), &self.history);
                log.after(after)
            }
            None => TopicLog::default().after(after),
        };
        Box::pin(async move { Ok(found) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn publication(topic: &str, data: &str, key: Option<&str>) -> Publication {
        Publication {
            topic: Topic::new(topic).unwrap(),
            data: RawValue::from_string(data.into()).unwrap(),
            dedup_key: key.map(Into::into),
            hop: 0,
        }
    }

    #[tokio::test]
    async fn ids_are_per_topic_sequences_and_dedup_answers_first_id() {
        let b = MemoryBroker::new(
            Arc::new(TopicRouter::default()),
            HistoryLimits::default(),
            Duration::from_secs(120),
        );
        let ids = b
            .publish(vec![
                publication("a", "1", None),
                publication("a", "2", Some("k")),
                publication("b", "3", None),
                publication("a", "4", Some("k")),
            ])
            .await
            .unwrap();
        let ids: Vec<&str> = ids.iter().map(|i| &**i).collect();
        assert_eq!(ids, ["1", "2", "1", "2"]);
        assert_eq!(&*b.position(&Topic::new("a").unwrap()).await.unwrap(), "2");
        assert_eq!(&*b.position(&Topic::new("zz").unwrap()).await.unwrap(), "0");
    }

    #[tokio::test(start_paused = true)]
    async fn sweep_frees_old_history_but_keeps_the_sequence() {
        let limits = HistoryLimits {
            max_messages: 100,
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(60),
        };
        let b = MemoryBroker::new(
            Arc::new(TopicRouter::default()),
            limits,
            Duration::from_secs(10),
        );
        b.publish(vec![
            publication("a", "1", Some("k")),
            publication("a", "2", None),
        ])
        .await
        .unwrap();
        tokio::time::advance(Duration::from_secs(61)).await;
        b.sweep();
        let t = Topic::new("a").unwrap();
        {
            let log = b.log(&t);
            let l = log.lock();
            assert!(l.history.is_empty() && l.dedup.is_empty());
            assert_eq!(l.history_bytes, 0);
        }
        let ids = b
            .publish(vec![publication("a", "3", Some("k"))])
            .await
            .unwrap();
        assert_eq!(&*ids[0], "3", "ids continue; the dedup key expired");
        assert!(b.history(&t, "1").await.unwrap().truncated, "2 aged out");
    }

    #[tokio::test]
    async fn history_after_a_position() {
        let limits = HistoryLimits {
            max_messages: 3,
            max_bytes: 1000,
            max_age: Duration::from_secs(60),
        };
        let b = MemoryBroker::new(
            Arc::new(TopicRouter::default()),
            limits,
            Duration::from_secs(1),
        );
        let t = Topic::new("a").unwrap();
        let h = b.history(&t, "0").await.unwrap();
        assert!(
            h.messages.is_empty() && !h.truncated,
            "empty topic, from the start"
        );
        for i in 1..=5 {
            b.publish(vec![publication("a", &i.to_string(), None)])
                .await
                .unwrap();
        }
        // Retained: 3, 4, 5.
        let ids = |h: &History| {
            h.messages
                .iter()
                .map(|m| m.id.to_string())
                .collect::<Vec<_>>()
        };
        let h = b.history(&t, "3").await.unwrap();
        assert_eq!(
            (ids(&h), h.truncated),
            (vec!["4".to_string(), "5".into()], false)
        );
        let h = b.history(&t, "2").await.unwrap();
        assert_eq!(
            (ids(&h).len(), h.truncated),
            (3, false),
            "2 is just before the oldest kept"
        );
        let h = b.history(&t, "1").await.unwrap();
        assert_eq!((ids(&h).len(), h.truncated), (3, true), "2 was dropped");
        let h = b.history(&t, "5").await.unwrap();
        assert_eq!((ids(&h).len(), h.truncated), (0, false));
        assert!(
            b.history(&t, "9").await.unwrap().truncated,
            "a future position is another store's"
        );
        assert!(b.history(&t, "x").await.unwrap().truncated);
    }

    #[tokio::test]
    async fn history_is_bounded_by_count_and_bytes() {
        let limits = HistoryLimits {
            max_messages: 3,
            max_bytes: 10,
            max_age: Duration::from_secs(60),
        };
        let b = MemoryBroker::new(
            Arc::new(TopicRouter::default()),
            limits,
            Duration::from_secs(1),
        );
        for _ in 0..5 {
            b.publish(vec![publication("a", "1", None)]).await.unwrap();
        }
        let log = b.log(&Topic::new("a").unwrap());
        assert_eq!(log.lock().history.len(), 3);
        b.publish(vec![publication("a", "\"12345678\"", None)])
            .await
            .unwrap();
        let l = log.lock();
        assert!(l.history_bytes <= 10);
        assert_eq!(l.history.len(), 1);
    }
}

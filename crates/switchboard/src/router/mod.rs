//! The topic router: per node, topic -> local streams. A topic has one entry
//! here however many streams follow it; the broker is told about a topic when
//! its first local stream arrives and when its last one leaves.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use switchboard_protocol::Topic;

use crate::broker::Message;
use crate::stream::outbox::Outbox;

/// One local stream following a topic: its connection's inbox and its slot there.
#[derive(Clone)]
pub struct Subscriber {
    pub conn: Arc<Outbox>,
    pub slot: u32,
}

impl Subscriber {
    fn is(&self, conn: &Arc<Outbox>, slot: u32) -> bool {
        self.slot == slot && Arc::ptr_eq(&self.conn, conn)
    }
}

#[derive(Default)]
pub struct TopicRouter {
    topics: RwLock<HashMap<Topic, Vec<Subscriber>>>,
}

impl TopicRouter {
    /// Adds a subscriber; true when it is the topic's first on this node.
    pub fn add(&self, topic: &Topic, sub: Subscriber) -> bool {
        let mut topics = self.topics.write();
        let subs = topics.entry(topic.clone()).or_default();
        if subs.iter().any(|s| s.is(&sub.conn, sub.slot)) {
            return false;
        }
        subs.push(sub);
        subs.len() == 1
    }

    /// Removes a subscriber; true when the topic has no local stream left.
    pub fn remove(&self, topic: &Topic, conn: &Arc<Outbox>, slot: u32) -> bool {
        let mut topics = self.topics.write();
        let Some(subs) = topics.get_mut(topic) else {
            return false;
        };
        let before = subs.len();
        subs.retain(|s| !s.is(conn, slot));
        if subs.is_empty() && before > 0 {
            topics.remove(topic);
            return true;
        }
        false
    }

    /// Hands `msg` to every local stream on its topic.
    pub fn deliver(&self, msg: &Arc<Message>) {
        let topics = self.topics.read();
        if let Some(subs) = topics.get(&msg.topic) {
            for s in subs {
                s.conn.push_message(s.slot, msg.clone());
            }
        }
    }

    /// Tells every local stream on `topic` that messages were lost (`gap`).
    pub fn deliver_gap(&self, topic: &Topic) {
        let topics = self.topics.read();
        if let Some(subs) = topics.get(topic) {
            for s in subs {
                s.conn.push_gap(s.slot, topic.clone());
            }
        }
    }

    /// Topics with local streams now (to re-declare interest after a broker reconnect).
    pub fn topics(&self) -> Vec<Topic> {
        self.topics.read().keys().cloned().collect()
    }

    pub fn topic_count(&self) -> usize {
        self.topics.read().len()
    }

    pub fn subscriber_count(&self, topic: &Topic) -> usize {
        self.topics.read().get(topic).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_topic_first_and_last() {
        let r = TopicRouter::default();
        let t = Topic::new("t").unwrap();
        let a = Arc::new(Outbox::new(8, crate::ops::config::SlowConsumer::Close));
        let b = Arc::new(Outbox::new(8, crate::ops::config::SlowConsumer::Close));
        assert!(r.add(
            &t,
            Subscriber {
                conn: a.clone(),
                slot: 1
            }
        ));
        assert!(!r.add(
            &t,
            Subscriber {
                conn: b.clone(),
                slot: 1
            }
        ));
        assert!(
            !r.add(
                &t,
                Subscriber {
                    conn: a.clone(),
                    slot: 1
                }
            ),
            "same subscriber twice is one"
        );
        assert_eq!(r.topic_count(), 1);
        assert_eq!(r.subscriber_count(&t), 2);
        assert!(!r.remove(&t, &a, 1));
        assert!(r.remove(&t, &b, 1));
        assert_eq!(r.topic_count(), 0);
        assert!(!r.remove(&t, &b, 1));
    }
}

//! The broker: publishes messages, assigns their ids (positions), keeps
//! history, and delivers messages of topics this node is interested in to the
//! topic router. `memory` is the embedded default; `nats` and `redis` are
//! shared by many nodes.

#[cfg(any(feature = "nats", feature = "redis"))]
mod epoch;
pub mod history;
pub mod memory;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "redis")]
pub mod redis;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::value::RawValue;
use switchboard_protocol::publish::Publication;
use switchboard_protocol::{client, cursor, Topic};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// What a broker does for the gateway. Implementations deliver each message of
/// a watched topic to the [`crate::router::TopicRouter`], in id order per topic.
pub trait Broker: Send + Sync + 'static {
    /// Names the broker's store; cursors from another epoch cannot be resumed.
    fn epoch(&self) -> &str;
    fn is_ready(&self) -> bool;
    /// Publishes in order; answers each message's id. A repeated
    /// (topic, dedup_key) within the window answers the first id instead.
    fn publish(
        &self,
        messages: Vec<Publication>,
    ) -> BoxFuture<'_, Result<Vec<Arc<str>>, BrokerError>>;
    /// This node has local interest in `topic`; resolves once the broker confirms it.
    fn watch(&self, topic: &Topic) -> BoxFuture<'_, Result<(), BrokerError>>;
    /// The last local stream on `topic` left.
    fn unwatch(&self, topic: &Topic);
    /// The id of the newest message on `topic` ("0" if none yet).
    fn position(&self, topic: &Topic) -> BoxFuture<'_, Result<Arc<str>, BrokerError>>;
    /// The retained messages of `topic` after id `after`, oldest first.
    fn history<'a>(
        &'a self,
        topic: &'a Topic,
        after: &'a str,
    ) -> BoxFuture<'a, Result<History, BrokerError>>;
    /// Bytes of history this node holds, when the history lives in this
    /// process (the embedded broker); a shared broker's is its own.
    fn history_bytes(&self) -> Option<usize> {
        None
    }
}

/// What [`Broker::history`] found.
#[derive(Debug, Default)]
pub struct History {
    pub messages: Vec<Arc<Message>>,
    /// History no longer reaches back to `after` (or `after` is not a
    /// position of this store): messages were missed, the client gets `gap`.
    pub truncated: bool,
}

impl History {
    /// No messages to replay; `truncated`: some may have been missed.
    pub fn empty(truncated: bool) -> Self {
        Self {
            messages: Vec::new(),
            truncated,
        }
    }
}

/// A published message as every subscriber on this node shares it. The
/// encodings for direct delivery are made once, on first use, and shared.
#[derive(Debug)]
pub struct Message {
    pub topic: Topic,
    pub id: Arc<str>,
    /// `id` in comparable form, if it has one.
    pub order: Option<(u64, u64)>,
    /// The publisher's dedup key, if any (subscription dedup uses it).
    pub dedup_key: Option<Box<str>>,
    pub data: Box<RawValue>,
    /// Lambda publishes that led to it ([`Publication::hop`]).
    pub hop: u8,
    epoch: Arc<str>,
    cursor: OnceLock<String>,
    ws_tail: OnceLock<Bytes>,
    sse_tail: OnceLock<Bytes>,
}

impl Message {
    pub fn new(
        topic: Topic,
        id: Arc<str>,
        data: Box<RawValue>,
        epoch: Arc<str>,
        dedup_key: Option<Box<str>>,
    ) -> Self {
        Self {
            topic,
            order: cursor::id_order(&id),
            id,
            data,
            dedup_key,
            hop: 0,
            epoch,
            cursor: OnceLock::new(),
            ws_tail: OnceLock::new(),
            sse_tail: OnceLock::new(),
        }
    }

    pub fn with_hop(mut self, hop: u8) -> Self {
        self.hop = hop;
        self
    }

    /// What subscription dedup compares: the dedup key, else the data.
    pub fn dedup_hash(&self) -> u64 {
        match &self.dedup_key {
            Some(k) => crate::capability::dedup::key_hash(k.as_bytes()),
            None => crate::capability::dedup::key_hash(self.data.get().as_bytes()),
        }
    }

    /// The cursor of a stream that follows only this message's topic.
    pub fn single_topic_cursor(&self) -> &str {
        self.cursor.get_or_init(|| {
            let mut c = String::with_capacity(
                self.epoch.len() + self.topic.as_str().len() + self.id.len() + 2,
            );
            c.push_str(&self.epoch);
            cursor::push_entry(&mut c, self.topic.as_str(), &self.id);
            c
        })
    }

    /// `,"topic":..,"data":..}`: the shared tail of a WebSocket event frame.
    pub fn ws_tail(&self) -> &Bytes {
        self.ws_tail.get_or_init(|| {
            Bytes::from(client::topic_event_tail(
                self.topic.as_str(),
                self.data.get().as_bytes(),
            ))
        })
    }

    /// `data: ..\n\n`: the shared tail of an SSE event.
    pub fn sse_tail(&self) -> &Bytes {
        self.sse_tail.get_or_init(|| {
            let d = self.data.get().as_bytes();
            let mut v = Vec::with_capacity(d.len() + 8);
            v.extend_from_slice(b"data: ");
            v.extend_from_slice(d);
            v.extend_from_slice(b"\n\n");
            Bytes::from(v)
        })
    }
}

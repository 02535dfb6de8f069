//! The NATS broker: JetStream stores each topic's history and assigns ids
//! (stream sequences), and republishes every stored message, in sequence
//! order, to a core subject that nodes subscribe to per topic of interest.

mod connection;
mod follower;
mod subjects;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, stream::Stream as JsStream};
use async_nats::HeaderMap;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde_json::value::RawValue;
use switchboard_protocol::publish::Publication;
use switchboard_protocol::Topic;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::epoch::{self, unavailable, EpochCell, CONFIRM_TIMEOUT};
use super::history::HistoryPolicy;
use super::{BoxFuture, Broker, BrokerError, History, Message};
use crate::ops::supervise::Kept;
use crate::router::TopicRouter;

/// JetStream keeps a topic's messages at least this long, so that resuming
/// on a topic quiet for longer than the history window is still exact.
const MIN_KEEP: Duration = Duration::from_secs(3600);

pub struct NatsBroker {
    shared: Arc<NatsCore>,
}

/// A connection generation as the topic followers see it: `connected` moves
/// on every (re)connection, `store` when the broker lost its store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Session {
    connected: u64,
    store: u64,
}

/// The broker's core, shared by the `NatsBroker` handle, its connection
/// task and the follower tasks: the client, readiness, epoch and this node's interest.
struct NatsCore {
    router: Arc<TopicRouter>,
    client: async_nats::Client,
    js: jetstream::Context,
    /// The history stream, once ensured on this connection.
    stream: RwLock<Option<JsStream>>,
    ready: AtomicBool,
    epoch: EpochCell,
    session: watch::Sender<Session>,
    /// This node's interest: one follower task per topic.
    topics: Mutex<HashMap<Topic, Follow>>,
    history: HistoryPolicy,
    dedup_window: Duration,
    shutdown: CancellationToken,
}

struct Follow {
    stop: CancellationToken,
    /// The broker confirmed the subscription.
    confirmed: watch::Sender<bool>,
}

impl NatsBroker {
    /// Connects to `url` (`nats://[user:pass@]HOST:PORT`, comma-separated for
    /// a cluster; `tls://` for TLS, verified against `ca` or the system's
    /// roots) and waits a moment for the first connection; the node runs
    /// (not ready) and keeps trying if the broker is not there yet.
    pub async fn start(
        url: &str,
        ca: Option<&crate::tls::CaFile>,
        router: Arc<TopicRouter>,
        history: HistoryPolicy,
        dedup_window: Duration,
    ) -> anyhow::Result<Self> {
        let (events_tx, events_rx) = tokio::sync::mpsc::channel(64);
        let client = connection::connect(url, ca, events_tx).await?;
        let shared = Arc::new(NatsCore {
            router,
            js: jetstream::new(client.clone()),
            client,
            stream: RwLock::new(None),
            ready: AtomicBool::new(false),
            epoch: EpochCell::new(),
            session: watch::channel(Session::default()).0,
            topics: Mutex::new(HashMap::new()),
            history,
            dedup_window,
            shutdown: CancellationToken::new(),
        });
        let events = Kept::new(events_rx);
        let run = {
            let shared = shared.clone();
            move || connection::supervise(shared.clone(), events.clone())
        };
        let redacted = connection::redact(url);
        Ok(epoch::start_supervised(Self { shared }, run, "NATS", &redacted).await)
    }
}

impl Drop for NatsBroker {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
        for (_, f) in self.shared.topics.lock().drain() {
            f.stop.cancel();
        }
    }
}

impl NatsCore {
    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
            && self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn stream(&self) -> Result<JsStream, BrokerError> {
        self.stream
            .read()
            .clone()
            .ok_or_else(|| unavailable("NATS is not connected"))
    }

    /// The sequence of the newest retained message on `topic`, 0 if none.
    async fn last_seq(&self, topic: &Topic) -> Result<u64, BrokerError> {
        let stream = self.stream()?;
        let got = tokio::time::timeout(
            CONFIRM_TIMEOUT,
            stream.direct_get_last_for_subject(subjects::msg_subject(topic)),
        )
        .await
        .map_err(unavailable)?;
        match got {
            Ok(m) => Ok(m.sequence),
            Err(e) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => Ok(0),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Retained messages of `topic` after sequence `after`, within the
    /// topic's history bounds (count, bytes, age; per prefix).
    async fn history_after(&self, topic: &Topic, after: u64) -> Result<History, BrokerError> {
        tokio::time::timeout(CONFIRM_TIMEOUT, self.read_history(topic, after))
            .await
            .map_err(unavailable)?
    }

    async fn read_history(&self, topic: &Topic, after: u64) -> Result<History, BrokerError> {
        use jetstream::stream::DirectGetErrorKind::NotFound;
        let stream = self.stream()?;
        let subject = subjects::msg_subject(topic);
        let limits = self.history.limits_for(topic.as_str());
        let last = self.last_seq(topic).await?;
        if after >= last {
            // Past the newest: not a position of this topic in this store
            // (or its messages expired), so something may have been missed.
            return Ok(History::empty(after > last));
        }
        // Retention drops a subject's oldest first: if `after` itself is
        // still there, so is everything after it.
        let mut truncated = false;
        if after > 0 {
            match stream.direct_get(after).await {
                Ok(m) if m.subject.as_str() == subject => {}
                Ok(_) => truncated = true,
                Err(e) if e.kind() == NotFound => truncated = true,
                Err(e) => return Err(unavailable(e)),
            }
        }
        let mut found = Vec::new();
        let mut next = after + 1;
        while next <= last && found.len() <= limits.max_messages {
            let m = match stream
                .direct_get_next_for_subject(subject.as_str(), Some(next))
                .await
            {
                Ok(m) => m,
                Err(e) if e.kind() == NotFound => break,
                Err(e) => return Err(unavailable(e)),
            };
            next = m.sequence + 1;
            found.push(m);
        }
        // The window applies to what is read back: newest kept first.
        let now_ns = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let max_age_ns = limits.max_age.as_nanos() as i128;
        let mut keep = 0;
        let mut bytes = 0;
        for m in found.iter().rev() {
            bytes += m.payload.len();
            let age = now_ns - m.time.unix_timestamp_nanos();
            if keep >= limits.max_messages || bytes > limits.max_bytes || age > max_age_ns {
                break;
            }
            keep += 1;
        }
        truncated |= keep < found.len();
        let epoch = self.epoch.arc();
        let skip = found.len() - keep;
        let messages = found
            .into_iter()
            .skip(skip)
            .filter_map(|m| message(topic, m.sequence, &m.payload, Some(&m.headers), &epoch))
            .collect();
        Ok(History {
            messages,
            truncated,
        })
    }
}

/// A stored or republished message as the router shares it.
fn message(
    topic: &Topic,
    seq: u64,
    payload: &Bytes,
    headers: Option<&HeaderMap>,
    epoch: &Arc<str>,
) -> Option<Arc<Message>> {
    let text = match std::str::from_utf8(payload) {
        Ok(t) => t.to_owned(),
        Err(_) => {
            tracing::warn!(topic = %topic, seq, "skipping a message that is not UTF-8 JSON");
            return None;
        }
    };
    let data = match RawValue::from_string(text) {
        Ok(d) => d,
        Err(_) => {
            tracing::warn!(topic = %topic, seq, "skipping a message that is not JSON");
            return None;
        }
    };
    let dedup_key = headers
        .and_then(|h| h.get(subjects::DEDUP_HEADER))
        .and_then(|v| subjects::unhex(v.as_str()))
        .map(String::into_boxed_str);
    let hop = headers
        .and_then(|h| h.get(subjects::HOP_HEADER))
        .and_then(|v| v.as_str().parse().ok())
        .unwrap_or(0);
    Some(Arc::new(
        Message::new(
            topic.clone(),
            Arc::from(seq.to_string()),
            data,
            epoch.clone(),
            dedup_key,
        )
        .with_hop(hop),
    ))
}

impl Broker for NatsBroker {
    fn epoch(&self) -> &str {
        self.shared.epoch.get()
    }

    fn is_ready(&self) -> bool {
        self.shared.is_ready()
    }

    fn publish(
        &self,
        messages: Vec<Publication>,
    ) -> BoxFuture<'_, Result<Vec<Arc<str>>, BrokerError>> {
        Box::pin(async move {
            if !self.shared.is_ready() {
                return Err(unavailable("NATS is not connected"));
            }
            // Sent back to back on one connection, so JetStream stores them
            // in this order; then the acks, each with its sequence.
            let mut acks = Vec::with_capacity(messages.len());
            for p in messages {
                let mut headers = HeaderMap::new();
                if let Some(key) = &p.dedup_key {
                    headers.insert("Nats-Msg-Id", subjects::msg_id(&p.topic, key).as_str());
                    headers.insert(
                        subjects::DEDUP_HEADER,
                        subjects::hex(key.as_bytes()).as_str(),
                    );
                }
                if p.hop > 0 {
                    headers.insert(subjects::HOP_HEADER, p.hop.to_string().as_str());
                }
                let payload = Bytes::copy_from_slice(p.data.get().as_bytes());
                let ack = self
                    .shared
                    .js
                    .publish_with_headers(subjects::msg_subject(&p.topic), headers, payload)
                    .await
                    .map_err(unavailable)?;
                acks.push(ack);
            }
            let mut ids = Vec::with_capacity(acks.len());
            for ack in acks {
                let ack = ack.await.map_err(|e| {
                    if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound {
                        // Deleted behind our back: the supervisor recreates it.
                        self.shared.ready.store(false, Ordering::Release);
                    }
                    unavailable(e)
                })?;
                ids.push(Arc::from(ack.sequence.to_string()));
            }
            Ok(ids)
        })
    }

    fn watch(&self, topic: &Topic) -> BoxFuture<'_, Result<(), BrokerError>> {
        let topic = topic.clone();
        Box::pin(async move { follower::watch(&self.shared, topic).await })
    }

    fn unwatch(&self, topic: &Topic) {
        if let Some(f) = self.shared.topics.lock().remove(topic) {
            // The follower ends and drops its subscription (UNSUB).
            f.stop.cancel();
        }
    }

    fn position(&self, topic: &Topic) -> BoxFuture<'_, Result<Arc<str>, BrokerError>> {
        let topic = topic.clone();
        Box::pin(async move {
            if !self.shared.is_ready() {
                return Err(unavailable("NATS is not connected"));
            }
            // Another stream's watch of this topic may still be in flight:
            // a position read before the broker confirmed it could miss messages.
            let confirmed = self
                .shared
                .topics
                .lock()
                .get(&topic)
                .map(|f| f.confirmed.subscribe());
            epoch::wait_confirmed(confirmed).await;
            let seq = self.shared.last_seq(&topic).await?;
            Ok(Arc::from(seq.to_string()))
        })
    }

    fn history<'a>(
        &'a self,
        topic: &'a Topic,
        after: &'a str,
    ) -> BoxFuture<'a, Result<History, BrokerError>> {
        Box::pin(async move {
            let Ok(after) = after.parse::<u64>() else {
                // Not a JetStream sequence: a cursor from another broker.
                return Ok(History::empty(true));
            };
            self.shared.history_after(topic, after).await
        })
    }
}

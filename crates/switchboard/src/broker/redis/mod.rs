//! The Redis broker: a Lua script appends each message to its topic's Redis
//! stream (ids `MS-SEQ`, bounded history) and publishes it to the topic's
//! channel in one step; a node subscribes to the channels of its topics.

mod connection;
mod keys;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::Value;
use serde_json::value::RawValue;
use switchboard_protocol::publish::Publication;
use switchboard_protocol::{cursor, Topic};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::epoch::{self, unavailable, EpochCell, CONFIRM_TIMEOUT};
use super::history::HistoryPolicy;
use super::{BoxFuture, Broker, BrokerError, History, Message};
use crate::ops::supervise::Kept;
use crate::router::TopicRouter;

/// How long a topic's `last`/`cut` outlive its last message: resuming on a
/// topic quiet for longer than the history window stays exact this long.
const META_TTL: Duration = Duration::from_secs(24 * 3600);
/// Subscribe/unsubscribe requests queued for the connection task.
const COMMAND_QUEUE: usize = 1024;

pub struct RedisBroker {
    shared: Arc<RedisCore>,
}

/// The broker's core, shared by the `RedisBroker` handle and its
/// connection task: the client, readiness, epoch and this node's interest.
struct RedisCore {
    router: Arc<TopicRouter>,
    client: redis::Client,
    ready: AtomicBool,
    epoch: EpochCell,
    /// The store was lost (new epoch) and not every stream got its `gap` yet.
    store_lost: AtomicBool,
    /// A publish was refused for its epoch: the session's ping checks now.
    recheck: tokio::sync::Notify,
    state: Mutex<State>,
    commands_tx: mpsc::Sender<Command>,
    script: redis::Script,
    history: HistoryPolicy,
    dedup_window: Duration,
    shutdown: CancellationToken,
}

#[derive(Default)]
struct State {
    /// This node's interest, and per topic the newest id it delivered.
    topics: HashMap<Topic, Watched>,
    /// The command connection of the current session.
    conn: Option<MultiplexedConnection>,
}

struct Watched {
    /// The newest id delivered to the router (or the position when interest
    /// began); None: unknown (interest declared while disconnected).
    last: Option<(u64, u64)>,
    /// The broker confirmed the subscription in the current session.
    confirmed: watch::Sender<bool>,
}

impl Watched {
    fn new(last: Option<(u64, u64)>) -> Self {
        Self {
            last,
            confirmed: watch::channel(false).0,
        }
    }
}

/// What the connection task does on the pub/sub connection, in order.
enum Command {
    Subscribe(Topic, oneshot::Sender<bool>),
    Unsubscribe(Topic),
}

impl RedisBroker {
    /// Connects to `url` (`redis://[user:pass@]HOST:PORT[/DB]`; `rediss://`
    /// for TLS, verified against `ca` or the system's roots) and waits a
    /// moment for the first session; the node runs (not ready) and keeps
    /// trying if Redis is not there yet.
    pub async fn start(
        url: &str,
        ca: Option<&crate::tls::CaFile>,
        router: Arc<TopicRouter>,
        history: HistoryPolicy,
        dedup_window: Duration,
    ) -> anyhow::Result<Self> {
        let client = match ca {
            Some(ca) if url.starts_with("rediss://") => {
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.pem.to_vec()),
                };
                redis::Client::build_with_tls(url, certs)
            }
            _ => redis::Client::open(url),
        }
        .map_err(|e| anyhow::anyhow!("broker {}: {e}", connection::redact(url)))?;
        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let shared = Arc::new(RedisCore {
            router,
            client,
            ready: AtomicBool::new(false),
            epoch: EpochCell::new(),
            store_lost: AtomicBool::new(false),
            recheck: tokio::sync::Notify::new(),
            state: Mutex::new(State::default()),
            commands_tx,
            script: redis::Script::new(keys::PUBLISH_SCRIPT),
            history,
            dedup_window,
            shutdown: CancellationToken::new(),
        });
        let commands = Kept::new(commands_rx);
        let run = {
            let shared = shared.clone();
            move || connection::supervise(shared.clone(), commands.clone())
        };
        let redacted = connection::redact(url);
        Ok(epoch::start_supervised(Self { shared }, run, "Redis", &redacted).await)
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

impl RedisCore {
    fn conn(&self) -> Result<MultiplexedConnection, BrokerError> {
        self.state
            .lock()
            .conn
            .clone()
            .ok_or_else(|| unavailable("Redis is not connected"))
    }

    /// The newest id ever published on `topic` ("0" if none, or forgotten).
    async fn last_id(
        &self,
        conn: &mut MultiplexedConnection,
        topic: &Topic,
    ) -> Result<String, BrokerError> {
        let last: Option<String> = redis::cmd("HGET")
            .arg(keys::meta_key(topic))
            .arg("last")
            .query_async(conn)
            .await
            .map_err(unavailable)?;
        Ok(last.unwrap_or_else(|| "0".into()))
    }

    async fn history_after(
        &self,
        conn: &mut MultiplexedConnection,
        topic: &Topic,
        after: (u64, u64),
    ) -> Result<History, BrokerError> {
        let (meta, entries): ((Option<String>, Option<String>), Vec<Value>) = redis::pipe()
            .cmd("HMGET")
            .arg(keys::meta_key(topic))
            .arg("last")
            .arg("cut")
            .cmd("XRANGE")
            .arg(keys::log_key(topic))
            .arg(keys::exclusive_start(after))
            .arg("+")
            .arg("COUNT")
            .arg(self.history.limits_for(topic.as_str()).max_messages)
            .query_async(conn)
            .await
            .map_err(unavailable)?;
        let order = |id: &Option<String>| id.as_deref().and_then(cursor::id_order);
        let (last, cut) = (order(&meta.0), order(&meta.1));
        let epoch = self.epoch.arc();
        let messages: Vec<Arc<Message>> = entries
            .iter()
            .filter_map(|e| entry(topic, e, &epoch))
            .collect();
        let truncated = match last {
            // Nothing known of this topic: only "from the start" is exact.
            None => after != (0, 0),
            // Not a position of this topic in this store.
            Some(last) if after > last => true,
            Some(last) => cut.is_some_and(|c| c > after) || (messages.is_empty() && last > after),
        };
        Ok(History {
            messages,
            truncated,
        })
    }

    async fn publish_batch(
        &self,
        conn: &mut MultiplexedConnection,
        messages: &[Publication],
    ) -> redis::RedisResult<Vec<String>> {
        let epoch = self.epoch.get();
        // One transaction: a store lost mid-batch fails all of it, not the
        // tail after messages that already went out live.
        let mut pipe = redis::pipe();
        pipe.atomic();
        for p in messages {
            let limits = self.history.limits_for(p.topic.as_str());
            let dedup = p.dedup_key.as_deref().map(|k| keys::dedup_key(&p.topic, k));
            let cmd = pipe
                .cmd("EVALSHA")
                .arg(self.script.get_hash())
                .arg(if dedup.is_some() { 5 } else { 4 })
                .arg(keys::log_key(&p.topic))
                .arg(keys::meta_key(&p.topic))
                .arg(keys::EPOCH_KEY)
                .arg(keys::FLOOR_KEY);
            if let Some(d) = dedup {
                cmd.arg(d);
            }
            cmd.arg(p.data.get())
                .arg(p.dedup_key.as_deref().unwrap_or(""))
                .arg(keys::channel(&p.topic))
                .arg(limits.max_messages)
                .arg(limits.max_bytes)
                .arg(limits.max_age.as_millis() as u64)
                .arg(self.dedup_window.as_millis().max(1) as u64)
                .arg(META_TTL.as_millis() as u64)
                .arg(epoch)
                .arg(u32::from(p.hop));
        }
        pipe.query_async(conn).await
    }
}

/// Whether `e`, or any command's error in a failed pipeline, has `code`.
fn has_code(e: &redis::RedisError, code: &str) -> bool {
    e.code() == Some(code)
        || e.clone()
            .into_server_errors()
            .is_some_and(|errors| errors.iter().any(|(_, s)| s.code() == code))
}

/// An XRANGE entry `[id, [field, value, ...]]` as a message.
fn entry(topic: &Topic, e: &Value, epoch: &Arc<str>) -> Option<Arc<Message>> {
    let Value::Array(parts) = e else { return None };
    let (Some(Value::BulkString(id)), Some(Value::Array(fields))) = (parts.first(), parts.get(1))
    else {
        return None;
    };
    let mut data = None;
    let mut key = None;
    let mut hop = 0;
    for pair in fields.chunks(2) {
        if let [Value::BulkString(f), Value::BulkString(v)] = pair {
            match f.as_slice() {
                b"d" => data = String::from_utf8(v.clone()).ok(),
                b"k" => key = String::from_utf8(v.clone()).ok(),
                b"h" => {
                    hop = std::str::from_utf8(v)
                        .ok()
                        .and_then(|h| h.parse().ok())
                        .unwrap_or(0)
                }
                _ => {}
            }
        }
    }
    let id = std::str::from_utf8(id).ok()?;
    message(topic, id, data?, key.as_deref(), epoch).map(|m| Arc::new(m.with_hop(hop)))
}

fn message(
    topic: &Topic,
    id: &str,
    data: String,
    dedup_key: Option<&str>,
    epoch: &Arc<str>,
) -> Option<Message> {
    let Ok(data) = RawValue::from_string(data) else {
        tracing::warn!(topic = %topic, id, "skipping a message that is not JSON");
        return None;
    };
    Some(Message::new(
        topic.clone(),
        Arc::from(id),
        data,
        epoch.clone(),
        dedup_key.map(Into::into),
    ))
}

impl Broker for RedisBroker {
    fn epoch(&self) -> &str {
        self.shared.epoch.get()
    }

    fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    fn publish(
        &self,
        messages: Vec<Publication>,
    ) -> BoxFuture<'_, Result<Vec<Arc<str>>, BrokerError>> {
        Box::pin(async move {
            let mut conn = self.shared.conn()?;
            let mut result = self.shared.publish_batch(&mut conn, &messages).await;
            if matches!(&result, Err(e) if has_code(e, "NOSCRIPT")) {
                // The script cache was flushed: nothing of the batch ran.
                self.shared
                    .script
                    .prepare_invoke()
                    .load_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                result = self.shared.publish_batch(&mut conn, &messages).await;
            }
            match result {
                Err(e) if has_code(&e, keys::EPOCH_MISMATCH) => {
                    // Nothing of the batch was written (MULTI/EXEC: every
                    // script saw the same epoch): the store was replaced
                    // under this node. Its session checks now and reconnects.
                    self.shared.recheck.notify_one();
                    Err(unavailable("Redis lost its store; reconnecting"))
                }
                Err(e) => Err(unavailable(e)),
                Ok(ids) => Ok(ids.into_iter().map(Arc::from).collect()),
            }
        })
    }

    fn watch(&self, topic: &Topic) -> BoxFuture<'_, Result<(), BrokerError>> {
        let topic = topic.clone();
        Box::pin(async move { connection::watch(&self.shared, topic).await })
    }

    fn unwatch(&self, topic: &Topic) {
        if self.shared.state.lock().topics.remove(topic).is_some() {
            // Queued behind any subscribe of the same topic; skipped there if
            // the topic is watched again by then. A full queue leaves the
            // channel subscribed until the next session, which is harmless.
            let _ = self
                .shared
                .commands_tx
                .try_send(Command::Unsubscribe(topic.clone()));
        }
    }

    fn position(&self, topic: &Topic) -> BoxFuture<'_, Result<Arc<str>, BrokerError>> {
        let topic = topic.clone();
        Box::pin(async move {
            let mut conn = self.shared.conn()?;
            // Another stream's watch of this topic may still be in flight:
            // a position read before Redis confirmed it could miss messages.
            let confirmed = self
                .shared
                .state
                .lock()
                .topics
                .get(&topic)
                .map(|w| w.confirmed.subscribe());
            epoch::wait_confirmed(confirmed).await;
            let last = self.shared.last_id(&mut conn, &topic).await?;
            Ok(Arc::from(last))
        })
    }

    fn history<'a>(
        &'a self,
        topic: &'a Topic,
        after: &'a str,
    ) -> BoxFuture<'a, Result<History, BrokerError>> {
        Box::pin(async move {
            let Some(after) = cursor::id_order(after) else {
                return Ok(History::empty(true));
            };
            let mut conn = self.shared.conn()?;
            tokio::time::timeout(
                CONFIRM_TIMEOUT,
                self.shared.history_after(&mut conn, topic, after),
            )
            .await
            .map_err(unavailable)?
        })
    }
}

//! The Redis connection: one task owns a session (a command connection and a
//! pub/sub connection), subscribes and unsubscribes in request order, delivers
//! live messages in order, pings both connections, and on a loss reconnects
//! with backoff, re-declares interest, and catches every topic up from history.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::AsyncConnectionConfig;
use switchboard_protocol::{cursor, Topic};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{keys, message, unavailable, Command, RedisCore, Watched, CONFIRM_TIMEOUT};
use crate::broker::epoch::backoff;
use crate::broker::BrokerError;
use crate::ops::supervise::Kept;

/// Both connections are pinged this often; one unanswered for
/// [`PING_TIMEOUT`] ends the session, so "not ready" shows within about 1.5 s.
const PING_EVERY: Duration = Duration::from_millis(500);
const PING_TIMEOUT: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Channels per SUBSCRIBE when re-declaring interest.
const SUBSCRIBE_CHUNK: usize = 512;

pub(super) use crate::ops::secret::redact_url as redact;

struct Session {
    conn: MultiplexedConnection,
    sink: PubSubSink,
    messages: PubSubStream,
}

/// Runs sessions until the broker is dropped. Restarted after a panic, it
/// opens a new session: interest re-declared, every topic caught up.
pub(super) async fn supervise(shared: Arc<RedisCore>, commands: Kept<mpsc::Receiver<Command>>) {
    let mut commands_rx = commands.hold().await;
    let mut attempt = 0u32;
    loop {
        let opened = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            s = open(&shared) => s,
        };
        match opened {
            Ok(session) => {
                attempt = 0;
                tracing::info!(
                    epoch = shared.epoch.get(),
                    "Redis connected; interest re-declared"
                );
                run(&shared, session, &mut commands_rx).await;
                tracing::warn!("Redis connection lost; not ready, reconnecting");
            }
            Err(e) => {
                if attempt == 0 {
                    tracing::warn!(error = %e, "Redis unavailable; retrying");
                }
            }
        }
        shared.ready.store(false, Ordering::Release);
        {
            let mut state = shared.state.lock();
            state.conn = None;
            for w in state.topics.values() {
                w.confirmed.send_replace(false);
            }
        }
        let pause = tokio::time::sleep(backoff(attempt));
        attempt = attempt.saturating_add(1);
        tokio::pin!(pause);
        // While down, interest is only recorded: the next session declares it.
        loop {
            tokio::select! {
                () = shared.shutdown.cancelled() => return,
                () = &mut pause => break,
                c = commands_rx.recv() => if c.is_none() { return },
            }
        }
    }
}

/// Connects, reads (or sets) the epoch, subscribes to every topic of
/// interest, and catches each up from history before reading live messages.
async fn open(shared: &Arc<RedisCore>) -> redis::RedisResult<Session> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(CONFIRM_TIMEOUT));
    let mut conn = shared
        .client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    shared.script.prepare_invoke().load_async(&mut conn).await?;
    let fresh = format!("r{:016x}", rand::random::<u64>());
    let epoch: String = redis::Script::new(keys::EPOCH_SCRIPT)
        .key(keys::EPOCH_KEY)
        .key(keys::FLOOR_KEY)
        .arg(&fresh)
        .invoke_async(&mut conn)
        .await?;
    if shared.epoch.set(&epoch) {
        // Kept until every topic was told, even if this session fails first.
        shared.store_lost.store(true, Ordering::Release);
    }
    let lost_store = shared.store_lost.load(Ordering::Acquire);
    let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, shared.client.get_async_pubsub())
        .await
        .map_err(|_| timeout_error("pub/sub connect"))??;
    let (mut sink, messages) = pubsub.split();
    // Interest recorded so far, and whatever the router has: from here on a
    // new watch queues its own subscribe, handled once this session runs.
    let topics: Vec<Topic> = {
        let mut state = shared.state.lock();
        state.conn = Some(conn.clone());
        for t in shared.router.topics() {
            state.topics.entry(t).or_insert_with(|| Watched::new(None));
        }
        state.topics.keys().cloned().collect()
    };
    for chunk in topics.chunks(SUBSCRIBE_CHUNK) {
        let channels: Vec<String> = chunk.iter().map(keys::channel).collect();
        tokio::time::timeout(CONFIRM_TIMEOUT, sink.subscribe(channels))
            .await
            .map_err(|_| timeout_error("subscribe"))??;
    }
    {
        let state = shared.state.lock();
        for t in &topics {
            if let Some(w) = state.topics.get(t) {
                w.confirmed.send_replace(true);
            }
        }
    }
    if lost_store {
        tracing::warn!(epoch = %epoch, "Redis lost its store: streams get gap");
    }
    for topic in &topics {
        catch_up(shared, &mut conn, topic, lost_store).await?;
    }
    shared.store_lost.store(false, Ordering::Release);
    shared.ready.store(true, Ordering::Release);
    Ok(Session {
        conn,
        sink,
        messages,
    })
}

fn timeout_error(what: &'static str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("Redis {what} timed out"),
    ))
}

/// Delivers, in order, what history holds after the newest id this node
/// delivered on `topic`; `gap` first if it no longer reaches back.
async fn catch_up(
    shared: &RedisCore,
    conn: &mut MultiplexedConnection,
    topic: &Topic,
    lost_store: bool,
) -> redis::RedisResult<()> {
    let after = {
        let mut state = shared.state.lock();
        let Some(w) = state.topics.get_mut(topic) else {
            return Ok(());
        };
        if lost_store {
            // The new store's ids are later in time than the old ones (ids
            // are MS-SEQ), so streams take everything it holds.
            w.last = Some((0, 0));
            shared.router.deliver_gap(topic);
        }
        w.last
    };
    let Some(after) = after else {
        // Interest declared while disconnected: where it began is unknown.
        shared.router.deliver_gap(topic);
        let last = shared.last_id(conn, topic).await.map_err(io_error)?;
        if let Some(w) = shared.state.lock().topics.get_mut(topic) {
            w.last = cursor::id_order(&last);
        }
        return Ok(());
    };
    let history = shared
        .history_after(conn, topic, after)
        .await
        .map_err(io_error)?;
    if history.truncated {
        shared.router.deliver_gap(topic);
    }
    for m in history.messages {
        deliver(shared, m);
    }
    Ok(())
}

fn io_error(e: BrokerError) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::other(e.to_string()))
}

/// Hands `m` to the router unless this node already delivered it (or later).
fn deliver(shared: &RedisCore, m: Arc<crate::broker::Message>) {
    {
        let mut state = shared.state.lock();
        let Some(w) = state.topics.get_mut(&m.topic) else {
            return;
        };
        if let (Some(last), Some(order)) = (w.last, m.order) {
            if order <= last {
                return;
            }
        }
        if m.order.is_some() {
            w.last = m.order;
        }
    }
    // Only this task delivers, so order holds outside the lock too.
    shared.router.deliver(&m);
}

/// One session: commands, live messages, and the pings that end it.
async fn run(shared: &Arc<RedisCore>, mut s: Session, commands_rx: &mut mpsc::Receiver<Command>) {
    let lost = CancellationToken::new();
    tokio::spawn(ping(
        shared.clone(),
        s.conn.clone(),
        s.sink.clone(),
        lost.clone(),
    ));
    let _stop_ping = lost.clone().drop_guard();
    loop {
        tokio::select! {
            biased;
            () = shared.shutdown.cancelled() => return,
            () = lost.cancelled() => return,
            c = commands_rx.recv() => match c {
                None => return,
                Some(c) => if !command(shared, &mut s.sink, c).await { return },
            },
            m = s.messages.next() => match m {
                None => return,
                Some(m) => on_live(shared, &m),
            },
        }
    }
}

/// Subscribes or unsubscribes, if the topic's interest still says so.
/// False: the connection failed.
async fn command(shared: &RedisCore, sink: &mut PubSubSink, c: Command) -> bool {
    match c {
        Command::Subscribe(topic, reply) => {
            if !shared.state.lock().topics.contains_key(&topic) {
                let _ = reply.send(true);
                return true;
            }
            let ok = matches!(
                tokio::time::timeout(CONFIRM_TIMEOUT, sink.subscribe(keys::channel(&topic))).await,
                Ok(Ok(()))
            );
            if ok {
                if let Some(w) = shared.state.lock().topics.get(&topic) {
                    w.confirmed.send_replace(true);
                }
            }
            let _ = reply.send(ok);
            ok
        }
        Command::Unsubscribe(topic) => {
            if shared.state.lock().topics.contains_key(&topic) {
                return true;
            }
            matches!(
                tokio::time::timeout(CONFIRM_TIMEOUT, sink.unsubscribe(keys::channel(&topic)))
                    .await,
                Ok(Ok(()))
            )
        }
    }
}

fn on_live(shared: &RedisCore, m: &redis::Msg) {
    let Some(topic) = keys::topic_of_channel(m.get_channel_name()) else {
        return;
    };
    let Some(live) = keys::parse_live(m.get_payload_bytes()) else {
        tracing::warn!(topic = %topic, "skipping a live message of unknown shape");
        return;
    };
    let epoch = shared.epoch.arc();
    if let Some(msg) = message(
        &topic,
        live.id,
        live.data.to_owned(),
        live.dedup_key,
        &epoch,
    ) {
        deliver(shared, Arc::new(msg.with_hop(live.hop)));
    }
}

/// Pings both connections and checks the epoch; cancels `lost` (and marks
/// the node not ready at once) when either fails or the store was replaced.
async fn ping(
    shared: Arc<RedisCore>,
    mut conn: MultiplexedConnection,
    mut sink: PubSubSink,
    lost: CancellationToken,
) {
    let mut tick = tokio::time::interval(PING_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = lost.cancelled() => return,
            _ = tick.tick() => {}
            () = shared.recheck.notified() => {}
        }
        let checks = async {
            let epoch: Option<String> = redis::cmd("GET")
                .arg(keys::EPOCH_KEY)
                .query_async(&mut conn)
                .await
                .ok()?;
            sink.ping::<redis::Value>().await.ok()?;
            Some(epoch)
        };
        let healthy = match tokio::time::timeout(PING_TIMEOUT, checks).await {
            Ok(Some(Some(epoch))) => epoch == shared.epoch.get(),
            _ => false,
        };
        if !healthy {
            shared.ready.store(false, Ordering::Release);
            lost.cancel();
            return;
        }
    }
}

/// Declares this node's interest in `topic`: records it with the position
/// before subscribing (where a later catch-up starts), then has the session
/// subscribe; resolves once Redis confirmed the subscription.
pub(super) async fn watch(shared: &Arc<RedisCore>, topic: Topic) -> Result<(), BrokerError> {
    let conn = shared.state.lock().conn.clone();
    let base = match conn {
        Some(mut c) => shared
            .last_id(&mut c, &topic)
            .await
            .ok()
            .and_then(|id| cursor::id_order(&id)),
        None => None,
    };
    {
        let mut state = shared.state.lock();
        if shared.router.subscriber_count(&topic) == 0 {
            // The last local stream left while this watch was on its way.
            return Ok(());
        }
        state
            .topics
            .entry(topic.clone())
            .or_insert_with(|| Watched::new(base));
    }
    let (reply_tx, reply_rx) = oneshot::channel();
    let send = shared
        .commands_tx
        .send_timeout(Command::Subscribe(topic, reply_tx), CONFIRM_TIMEOUT);
    if send.await.is_err() {
        return Err(unavailable("Redis subscription queue is full"));
    }
    if base.is_none() && !shared.ready.load(Ordering::Acquire) {
        return Err(unavailable("Redis is not connected"));
    }
    match tokio::time::timeout(CONFIRM_TIMEOUT, reply_rx).await {
        Ok(Ok(true)) => Ok(()),
        _ => Err(unavailable("Redis did not confirm the subscription")),
    }
}

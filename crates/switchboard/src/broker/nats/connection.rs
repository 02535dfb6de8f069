//! The NATS connection: async-nats reconnects (with backoff) and re-sends
//! this node's subscriptions; here we ensure the history stream on every
//! (re)connection, tell readiness, detect a lost store by the stream's
//! creation time, and run one follower task per topic of interest that
//! delivers in sequence order and catches up from history after any gap.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use async_nats::jetstream::ErrorCode;
use async_nats::{Event, Subscriber};
use futures_util::StreamExt;
use switchboard_protocol::Topic;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{message, subjects, unavailable, Follow, NatsCore, Session, CONFIRM_TIMEOUT, MIN_KEEP};
use crate::broker::epoch::backoff;
use crate::broker::BrokerError;
use crate::ops::supervise::{supervise as supervised, Kept, TaskKind};
use crate::tls::CaFile;

/// Ping the server this often: a silent server is declared lost after two
/// unanswered pings, which keeps "not ready" within about 1.5 s.
const PING_INTERVAL: Duration = Duration::from_millis(500);

pub(super) use crate::ops::secret::redact_url as redact;
use crate::ops::secret::strip_userinfo;

pub(super) async fn connect(
    url: &str,
    ca: Option<&CaFile>,
    events_tx: mpsc::Sender<Event>,
) -> anyhow::Result<async_nats::Client> {
    let urls: Vec<&str> = url.split(',').map(str::trim).collect();
    let mut options = async_nats::ConnectOptions::new();
    if let Some(ca) = ca {
        // Used whenever TLS is (`tls://`, or a server that requires it).
        options = options.tls_client_config(crate::tls::client_config(Some(ca)).as_ref().clone());
    }
    let client = login(options, &urls)?
        .name("switchboard")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .ping_interval(PING_INTERVAL)
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(CONFIRM_TIMEOUT))
        .reconnect_delay_callback(|attempts| backoff(u32::try_from(attempts).unwrap_or(u32::MAX)))
        .event_callback(move |event| {
            let tx = events_tx.clone();
            async move {
                // A full queue only drops a wake-up; the supervisor also polls.
                let _ = tx.try_send(event);
            }
        })
        // Logged by async-nats as it connects: no credentials in them.
        .connect(urls.iter().map(|u| strip_userinfo(u)).collect::<Vec<_>>())
        .await
        .map_err(|e| anyhow::anyhow!("broker {}: {e}", redact(url)))?;
    Ok(client)
}

/// async-nats does not log in with a server URL's userinfo: the first URL
/// that has some gives it as options (`user:password@`, or `token@`).
fn login(
    options: async_nats::ConnectOptions,
    urls: &[&str],
) -> anyhow::Result<async_nats::ConnectOptions> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    for url in urls {
        let addr: async_nats::ServerAddr = url
            .parse()
            .map_err(|_| anyhow::anyhow!("broker {} is not a NATS URL", redact(url)))?;
        match (addr.username(), addr.password()) {
            (Some(user), Some(password)) => {
                return Ok(options.user_and_password(decode(user), decode(password)))
            }
            (Some(token), None) => return Ok(options.token(decode(token))),
            _ => {}
        }
    }
    Ok(options)
}

/// Tracks the connection: on every (re)connection ensures the stream, reads
/// the epoch, and starts a new session (followers catch up); on a loss marks
/// the node not ready at once.
pub(super) async fn supervise(shared: Arc<NatsCore>, events: Kept<mpsc::Receiver<Event>>) {
    let mut events_rx = events.hold().await;
    // A restart after a panic ensures the stream again and starts a session.
    shared.ready.store(false, Ordering::Release);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Log a lasting problem once, not on every tick.
    let mut warned = false;
    let mut checks = 0u32;
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = tick.tick() => {}
            event = events_rx.recv() => match event {
                Some(Event::Disconnected | Event::Closed) => {
                    if shared.ready.swap(false, Ordering::AcqRel) {
                        tracing::warn!("NATS connection lost; not ready, reconnecting");
                    }
                }
                Some(Event::SlowConsumer(sid)) => {
                    // Followers see the hole in `Nats-Last-Sequence` and catch up.
                    tracing::warn!(sid, "NATS dropped messages for a slow subscription");
                }
                Some(_) => {}
                None => return,
            },
        }
        let connected =
            shared.client.connection_state() == async_nats::connection::State::Connected;
        if !connected {
            shared.ready.store(false, Ordering::Release);
            continue;
        }
        if shared.ready.load(Ordering::Acquire) {
            checks += 1;
            if checks >= STREAM_CHECK_TICKS {
                checks = 0;
                check_stream(&shared).await;
            }
            continue;
        }
        match ensure_stream(&shared).await {
            Ok(js_stream) => {
                warned = false;
                let epoch = epoch_of(js_stream.cached_info());
                let lost_store = shared.epoch.set(&epoch);
                *shared.stream.write() = Some(js_stream);
                shared.ready.store(true, Ordering::Release);
                shared.session.send_modify(|s| {
                    s.connected += 1;
                    if lost_store {
                        s.store += 1;
                    }
                });
                if lost_store {
                    tracing::warn!(epoch = %epoch, "NATS history stream was recreated: streams get gap");
                } else {
                    tracing::info!(epoch = %epoch, "NATS connected; catching up");
                }
            }
            Err(e) => {
                if !warned {
                    tracing::error!(error = %e, "NATS connected but the history stream is not usable");
                    warned = true;
                }
            }
        }
    }
}

/// While connected, the stream is looked at every this many ticks (2 s): a
/// stream deleted or recreated behind the node's back is a lost store.
const STREAM_CHECK_TICKS: u32 = 8;

/// Marks the node not ready if the stream is gone (the next tick recreates
/// it), and starts a new store session if it was recreated elsewhere; true
/// in that case.
async fn check_stream(shared: &NatsCore) -> bool {
    use async_nats::jetstream::context::GetStreamErrorKind;
    match shared.js.get_stream(subjects::STREAM).await {
        Ok(s) => {
            let epoch = epoch_of(s.cached_info());
            if !shared.epoch.set(&epoch) {
                return false;
            }
            tracing::warn!(epoch = %epoch, "NATS history stream was recreated: streams get gap");
            *shared.stream.write() = Some(s);
            shared.session.send_modify(|s| {
                s.connected += 1;
                s.store += 1;
            });
            true
        }
        Err(e) => {
            if let GetStreamErrorKind::JetStream(j) = e.kind() {
                if j.error_code() == ErrorCode::STREAM_NOT_FOUND {
                    tracing::warn!("NATS history stream is gone; recreating it");
                    shared.ready.store(false, Ordering::Release);
                }
            }
            // Anything else (a slow answer) is the pings' business.
            false
        }
    }
}

/// The epoch: the history stream's creation time, the same on every node,
/// new when the stream (and so its store) was recreated.
fn epoch_of(info: &stream::Info) -> String {
    format!("n{:x}", info.created.unix_timestamp_nanos())
}

/// One stream holds every topic: it keeps the widest bounds of any topic
/// (each topic's own are applied when its history is read) within
/// `nats_max_bytes` overall, dropping the stream's oldest messages first.
fn stream_config(shared: &NatsCore, first_sequence: u64) -> stream::Config {
    let widest = shared.history.widest();
    stream::Config {
        name: subjects::STREAM.into(),
        description: Some("Switchboard topic history".into()),
        subjects: vec![format!("{}>", subjects::MSG_PREFIX)],
        max_messages_per_subject: widest.max_messages as i64,
        max_bytes: i64::try_from(shared.history.nats_max_bytes).unwrap_or(i64::MAX),
        max_age: widest.max_age.max(MIN_KEEP),
        discard: DiscardPolicy::Old,
        storage: StorageType::File,
        num_replicas: 1,
        duplicate_window: shared.dedup_window,
        allow_direct: true,
        republish: Some(stream::Republish {
            source: format!("{}>", subjects::MSG_PREFIX),
            destination: format!("{}>", subjects::LIVE_PREFIX),
            headers_only: false,
        }),
        first_sequence: Some(first_sequence),
        ..Default::default()
    }
}

/// Gets the history stream, or creates it. A new stream starts its sequences
/// at (creation ms x 1000), so ids stay increasing even across a lost store
/// and streams that saw the old ids keep taking the new ones.
async fn ensure_stream(shared: &NatsCore) -> anyhow::Result<stream::Stream> {
    use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
    match shared.js.get_stream(subjects::STREAM).await {
        Ok(s) => {
            let config = &s.cached_info().config;
            usable(config)?;
            let wanted = stream_config(shared, 1).max_bytes;
            if config.max_bytes != wanted {
                // Not edited behind the operator's back: said, once per connection.
                tracing::warn!(
                    stream = subjects::STREAM,
                    max_bytes = config.max_bytes,
                    history_nats_max_bytes = wanted,
                    "the NATS history stream exists with another max_bytes; it is kept"
                );
            }
            return Ok(s);
        }
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {}
            _ => return Err(e.into()),
        },
    }
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let first = now_ms.saturating_mul(1000).max(1);
    let mut created = match shared.js.create_stream(stream_config(shared, first)).await {
        Ok(s) => s,
        Err(e) => match e.kind() {
            // Another node created it first.
            CreateStreamErrorKind::JetStream(j)
                if j.error_code() == ErrorCode::STREAM_NAME_EXIST =>
            {
                return Ok(shared.js.get_stream(subjects::STREAM).await?)
            }
            _ => return Err(e.into()),
        },
    };
    let state = &created.cached_info().state;
    if state.last_sequence.saturating_add(1) < first {
        // Servers before 2.10 ignore `first_seq`: a purge up to it does the same.
        created.purge().sequence(first).await?;
    }
    created.info().await?;
    tracing::info!(stream = subjects::STREAM, "created the NATS history stream");
    Ok(created)
}

/// An existing stream (made by an operator, or an older version) must
/// capture the topics, allow direct reads and republish to the live subjects;
/// it is not edited behind the operator's back.
fn usable(config: &stream::Config) -> anyhow::Result<()> {
    let source = format!("{}>", subjects::MSG_PREFIX);
    let destination = format!("{}>", subjects::LIVE_PREFIX);
    anyhow::ensure!(
        config.subjects.contains(&source),
        "stream {} does not capture {source}",
        subjects::STREAM
    );
    anyhow::ensure!(
        config.allow_direct,
        "stream {} does not allow direct get",
        subjects::STREAM
    );
    anyhow::ensure!(
        matches!(&config.republish, Some(r) if r.source == source
            && r.destination == destination
            && !r.headers_only),
        "stream {} does not republish {source} to {destination}",
        subjects::STREAM
    );
    Ok(())
}

/// Declares this node's interest in `topic`: subscribes to its live subject
/// and starts its follower; resolves once the server has the subscription.
pub(super) async fn watch(shared: &Arc<NatsCore>, topic: Topic) -> Result<(), BrokerError> {
    let ready = shared.is_ready();
    // The position before subscribing: the follower catches up from it after
    // a reconnection, and spots messages that fell between read and subscribe.
    let base = if ready {
        shared.last_seq(&topic).await.ok()
    } else {
        None
    };
    let sub = shared
        .client
        .subscribe(subjects::live_subject(&topic))
        .await
        .map_err(unavailable)?;
    let stop = CancellationToken::new();
    let confirmed = watch::channel(false).0;
    {
        let mut topics = shared.topics.lock();
        if shared.router.subscriber_count(&topic) == 0 {
            // The last local stream left while this watch was on its way.
            return Ok(());
        }
        let follow = Follow {
            stop: stop.clone(),
            confirmed: confirmed.clone(),
        };
        if let Some(old) = topics.insert(topic.clone(), follow) {
            old.stop.cancel();
        }
    }
    let kept = Kept::new(Followed {
        sub,
        last: base,
        store: None,
    });
    let run = {
        let shared = shared.clone();
        move || follow(shared.clone(), topic.clone(), kept.clone(), stop.clone())
    };
    tokio::spawn(supervised(TaskKind::BrokerFollower, run));
    if !ready {
        // Subscribed on reconnection; the follower then sends `gap`.
        return Err(unavailable("NATS is not connected"));
    }
    match tokio::time::timeout(CONFIRM_TIMEOUT, shared.client.flush()).await {
        Ok(Ok(())) => {
            confirmed.send_replace(true);
            Ok(())
        }
        Ok(Err(e)) => Err(unavailable(e)),
        Err(e) => Err(unavailable(e)),
    }
}

/// One topic's follower: delivers its live messages in sequence order, and
/// catches up from history after a reconnection or wherever the republished
/// `Nats-Last-Sequence` shows a message it did not get.
struct Follower {
    shared: Arc<NatsCore>,
    topic: Topic,
    /// The newest sequence delivered (or the position when interest began);
    /// None: unknown (interest declared while disconnected).
    last: Option<u64>,
    session: watch::Receiver<Session>,
    /// The store generation `last` belongs to.
    store: u64,
}

/// What a follower keeps across restarts: its subscription and position.
struct Followed {
    sub: Subscriber,
    last: Option<u64>,
    /// None until the first run reads the session's store.
    store: Option<u64>,
}

async fn follow(
    shared: Arc<NatsCore>,
    topic: Topic,
    kept: Kept<Followed>,
    stop: CancellationToken,
) {
    let mut kept = kept.hold().await;
    let Followed { sub, last, store } = &mut *kept;
    let mut session = shared.session.subscribe();
    let now = session.borrow_and_update().store;
    let mut f = Follower {
        shared,
        topic,
        last: *last,
        session,
        store: *store.get_or_insert(now),
    };
    if f.store != now {
        // The store changed while this follower was down.
        f.on_session().await;
    }
    loop {
        *last = f.last;
        *store = Some(f.store);
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            changed = f.session.changed() => {
                if changed.is_err() {
                    break;
                }
                f.on_session().await;
            }
            msg = sub.next() => {
                let Some(msg) = msg else { break };
                f.on_live(msg).await;
            }
        }
    }
    let _ = sub.unsubscribe().await;
}

fn header_u64(msg: &async_nats::Message, name: &str) -> Option<u64> {
    msg.headers.as_ref()?.get(name)?.as_str().parse().ok()
}

impl Follower {
    /// A (re)connection: catch up; after a lost store, `gap` and start over.
    async fn on_session(&mut self) {
        let now: Session = *self.session.borrow_and_update();
        if now.store != self.store {
            self.new_store(now.store);
        }
        self.catch_up().await;
    }

    /// What this node had not delivered from the old store is lost; the new
    /// store's ids are larger than the old ones, so streams take them all.
    fn new_store(&mut self, store: u64) {
        self.store = store;
        self.shared.router.deliver_gap(&self.topic);
        self.last = Some(0);
    }

    async fn on_live(&mut self, msg: async_nats::Message) {
        let Some(seq) = header_u64(&msg, "Nats-Sequence") else {
            return;
        };
        let prev = header_u64(&msg, "Nats-Last-Sequence").unwrap_or(0);
        match self.last {
            Some(l) if seq <= l => return,
            Some(l) if prev != l => {
                // Messages between what we delivered and this one did not come.
                self.catch_up().await;
                if self.last.is_some_and(|l| seq <= l) {
                    return;
                }
                self.shared.router.deliver_gap(&self.topic);
            }
            Some(_) => {}
            None => self.shared.router.deliver_gap(&self.topic),
        }
        self.last = Some(seq);
        let epoch = self.shared.epoch.arc();
        if let Some(m) = message(&self.topic, seq, &msg.payload, msg.headers.as_ref(), &epoch) {
            self.shared.router.deliver(&m);
        }
    }

    /// Delivers, in order, what history holds after `last`; `gap` first if it
    /// no longer reaches back (or this node never knew where it was).
    async fn catch_up(&mut self) {
        let Some(after) = self.last else {
            self.shared.router.deliver_gap(&self.topic);
            if let Ok(seq) = self.shared.last_seq(&self.topic).await {
                self.last = Some(seq);
            }
            return;
        };
        let mut history = match self.shared.history_after(&self.topic, after).await {
            Ok(h) => h,
            Err(e) => {
                // Lost again: the next session retries.
                tracing::debug!(topic = %self.topic, error = %e, "catch-up postponed");
                return;
            }
        };
        if history.truncated && after > 0 && check_stream(&self.shared).await {
            // Not an old cursor: the stream was recreated. Every message
            // from here on carries the new epoch.
            let store = self.session.borrow_and_update().store;
            self.new_store(store);
            history = match self.shared.history_after(&self.topic, 0).await {
                Ok(h) => h,
                Err(_) => return,
            };
        } else if history.truncated {
            self.shared.router.deliver_gap(&self.topic);
        }
        for m in history.messages {
            let Some((seq, _)) = m.order else { continue };
            if seq > self.last.unwrap_or(0) {
                self.last = Some(seq);
                self.shared.router.deliver(&m);
            }
        }
    }
}

//! The NATS connection: async-nats reconnects (with backoff) and re-sends
//! this node's subscriptions; here we ensure the history stream on every
//! (re)connection, tell readiness and detect a lost store by the stream's
//! creation time. The per-topic followers are in `follower.rs`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use async_nats::jetstream::ErrorCode;
use async_nats::Event;
use tokio::sync::mpsc;

use super::{subjects, NatsCore, CONFIRM_TIMEOUT, MIN_KEEP};
use crate::broker::epoch::backoff;
use crate::ops::supervise::Kept;
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
pub(super) async fn check_stream(shared: &NatsCore) -> bool {
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

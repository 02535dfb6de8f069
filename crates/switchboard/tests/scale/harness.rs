//! The scale scenarios' harness: the shared broker (NATS or Redis), gateway
//! nodes on it, and clients that collect events by message id.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use switchboard_protocol::cursor::id_order;
use test_support::brokers::{NatsServer, RedisServer};
use test_support::{
    cursor_position, get, parse_cursor, publish, within, Gateway, SseClient, SseEvent, WsClient,
    WAIT,
};
use tokio::time::Instant;

pub const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
/// PROTOCOL.md: a lost broker shows in `/readyz` within 2 s; a little more
/// for polling three processes on a busy 2-core machine.
pub const LOST_WITHIN: Duration = Duration::from_millis(2_500);
/// Reconnection after a broker comes back: backoff is at most 2 s.
pub const BACK_WITHIN: Duration = Duration::from_secs(20);
/// A lambda may be retried before an open is answered.
pub const LAMBDA_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nats,
    Redis,
}

/// The shared broker of a scenario.
pub struct Broker {
    kind: Kind,
    nats: Option<NatsServer>,
    redis: Option<RedisServer>,
}

impl Broker {
    pub async fn start(kind: Kind) -> anyhow::Result<Self> {
        Ok(match kind {
            Kind::Nats => Self {
                kind,
                nats: Some(NatsServer::start().await?),
                redis: None,
            },
            Kind::Redis => Self {
                kind,
                nats: None,
                redis: Some(RedisServer::start().await?),
            },
        })
    }

    pub fn url(&self) -> String {
        self.url_on(self.port())
    }

    pub fn port(&self) -> u16 {
        match (&self.nats, &self.redis) {
            (Some(n), _) => n.port(),
            (_, Some(r)) => r.port(),
            _ => unreachable!("a broker is one or the other"),
        }
    }

    /// The broker's URL with another port (a proxy in front of it).
    pub fn url_on(&self, port: u16) -> String {
        match self.kind {
            Kind::Nats => format!("nats://127.0.0.1:{port}"),
            Kind::Redis => format!("redis://127.0.0.1:{port}"),
        }
    }

    pub async fn kill(&mut self) -> anyhow::Result<()> {
        match (&mut self.nats, &mut self.redis) {
            (Some(n), _) => n.kill().await,
            (_, Some(r)) => r.kill().await,
            _ => Ok(()),
        }
    }

    pub async fn restart(&mut self) -> anyhow::Result<()> {
        match (&mut self.nats, &mut self.redis) {
            (Some(n), _) => n.restart().await,
            (_, Some(r)) => r.restart().await,
            _ => Ok(()),
        }
    }

    /// NATS keeps its file store over a restart; this Redis has no persistence.
    pub fn keeps_store(&self) -> bool {
        self.kind == Kind::Nats
    }

    /// Makes the broker lose its store while it runs: Redis `FLUSHALL`, or
    /// the JetStream history stream deleted.
    pub async fn lose_store(&self) -> anyhow::Result<()> {
        match (&self.nats, &self.redis) {
            (Some(n), _) => delete_history_stream(&n.url()).await,
            (_, Some(r)) => {
                r.command(&["FLUSHALL"]).await?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The broker's own count of subscriptions to `topic`'s live messages.
    pub async fn interest(&self, topic: &str) -> anyhow::Result<u64> {
        match (&self.nats, &self.redis) {
            (Some(n), _) => Ok(n.subscription_count(&nats_live_subject(topic)).await? as u64),
            (_, Some(r)) => r.subscriber_count(&format!("sb:live:{topic}")).await,
            _ => Ok(0),
        }
    }

    /// Polls [`Broker::interest`] until it is `want`.
    pub async fn await_interest(&self, topic: &str, want: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            let n = self.interest(topic).await?;
            if n == want {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "broker interest in {topic} stayed {n}, wanted {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Deletes the JetStream stream that holds every topic's history.
#[cfg(feature = "nats")]
pub async fn delete_history_stream(url: &str) -> anyhow::Result<()> {
    let client = async_nats::connect(url).await?;
    let reply = within(WAIT, "the stream delete", async {
        Ok(client
            .request("$JS.API.STREAM.DELETE.SWITCHBOARD", "".into())
            .await?)
    })
    .await?;
    let body: Value = serde_json::from_slice(&reply.payload)?;
    anyhow::ensure!(body["success"] == true, "stream delete: {body}");
    Ok(())
}

#[cfg(not(feature = "nats"))]
pub async fn delete_history_stream(_url: &str) -> anyhow::Result<()> {
    anyhow::bail!("built without the nats feature")
}

/// The subject a node subscribes to for `topic` (docs/scaling.md): one token,
/// `[A-Za-z0-9_-]` kept, every other byte as `=XX`.
pub fn nats_live_subject(topic: &str) -> String {
    let mut s = String::from("sb.live.");
    for b in topic.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            s.push(b as char);
        } else {
            s.push_str(&format!("={b:02X}"));
        }
    }
    s
}

/// A gateway on `broker_url`, ready (connected to its broker).
pub async fn node(broker_url: &str, args: &[&str]) -> anyhow::Result<Gateway> {
    let mut all = vec!["--broker", broker_url];
    all.extend_from_slice(args);
    let gw = Gateway::start(BIN, &all).await?;
    wait_readyz(&gw, 200, BACK_WITHIN).await?;
    Ok(gw)
}

pub async fn nodes(broker_url: &str) -> anyhow::Result<(Gateway, Gateway, Gateway)> {
    let (a, b, c) = tokio::join!(
        node(broker_url, &[]),
        node(broker_url, &[]),
        node(broker_url, &[])
    );
    Ok((a?, b?, c?))
}

pub async fn readyz(gw: &Gateway) -> anyhow::Result<u16> {
    Ok(get(&gw.url("/readyz")).await?.status)
}

/// Polls `/readyz` until it answers `want`; how long that took.
pub async fn wait_readyz(gw: &Gateway, want: u16, limit: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        if readyz(gw).await? == want {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(
            start.elapsed() < limit,
            "/readyz of {} did not answer {want} within {limit:?}",
            gw.http_url()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub async fn publish_ok(gw: &Gateway, topic: &str, data: Value) -> anyhow::Result<String> {
    let (status, body) =
        publish(&gw.http_url(), None, &json!({"topic": topic, "data": data})).await?;
    anyhow::ensure!(
        status == 200,
        "publish on {}: {status} {body}",
        gw.http_url()
    );
    body["id"]
        .as_str()
        .map(str::to_owned)
        .context("publish answered no id")
}

pub async fn publish_keyed(
    gw: &Gateway,
    topic: &str,
    data: Value,
    key: &str,
) -> anyhow::Result<String> {
    let body = json!({"topic": topic, "data": data, "dedup_key": key});
    let (status, body) = publish(&gw.http_url(), None, &body).await?;
    anyhow::ensure!(status == 200, "publish: {status} {body}");
    body["id"]
        .as_str()
        .map(str::to_owned)
        .context("publish answered no id")
}

/// Publishes `{"n": i}` for each `i`, one after another; the ids.
pub async fn publish_run(
    gw: &Gateway,
    topic: &str,
    range: std::ops::Range<u32>,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for i in range {
        ids.push(publish_ok(gw, topic, json!({ "n": i })).await?);
    }
    Ok(ids)
}

pub fn sorted_ids(mut ids: Vec<String>) -> Vec<String> {
    ids.sort_by_key(|id| id_order(id));
    ids
}

/// A WebSocket connection to the direct app `pubsub` with one stream per
/// (name, topic), each `opened`, resuming from `resume` if given.
pub async fn ws_streams(
    gw: &Gateway,
    streams: &[(&str, &str)],
    resume: Option<&str>,
) -> anyhow::Result<WsClient> {
    let mut ws = WsClient::connect(&gw.ws_url("/v1/ws")).await?;
    for (name, topic) in streams {
        let mut frame =
            json!({"type": "open", "stream": name, "app": "pubsub", "params": {"topic": topic}});
        if let Some(r) = resume {
            frame["resume"] = json!(r);
        }
        ws.send_json(&frame).await?;
        let reply = ws.open_reply(name).await?;
        anyhow::ensure!(reply["type"] == "opened", "open {name}: {reply}");
    }
    Ok(ws)
}

pub async fn sse_stream(
    gw: &Gateway,
    topic: &str,
    last_event_id: Option<&str>,
) -> anyhow::Result<SseClient> {
    let url = gw.url(&format!("/v1/sse/pubsub?topic={topic}"));
    let headers: Vec<(&str, &str)> = last_event_id
        .map(|id| ("Last-Event-ID", id))
        .into_iter()
        .collect();
    let sse = SseClient::connect(&url, &headers).await?;
    anyhow::ensure!(sse.status() == 200, "SSE open answered {}", sse.status());
    Ok(sse)
}

/// One event as a test compares it: the message id (from the cursor), the
/// whole cursor, and the data.
#[derive(Debug, Clone)]
pub struct Got {
    pub id: String,
    pub cursor: String,
    pub data: Value,
}

impl Got {
    /// A WebSocket `event` frame `f` of `topic`.
    fn ws(f: &Value, topic: &str) -> anyhow::Result<Self> {
        let cursor = f["id"].as_str().context("event without id")?.to_owned();
        Self::at(cursor, topic, f["data"].clone())
    }

    /// An SSE event `e` of `topic`.
    fn sse(e: &SseEvent, topic: &str) -> anyhow::Result<Self> {
        let cursor = e.id.clone().context("SSE event without id")?;
        Self::at(cursor, topic, e.json()?)
    }

    fn at(cursor: String, topic: &str, data: Value) -> anyhow::Result<Self> {
        let id = cursor_position(&cursor, topic).context("cursor without the topic")?;
        Ok(Self { id, cursor, data })
    }
}

/// Reads until each of `streams` got `n` events of `topic`; fails on a `gap`
/// or a `closed`.
pub async fn ws_events(
    ws: &mut WsClient,
    streams: &[&str],
    topic: &str,
    n: usize,
) -> anyhow::Result<HashMap<String, Vec<Got>>> {
    let mut got: HashMap<String, Vec<Got>> = streams
        .iter()
        .map(|s| (s.to_string(), Vec::new()))
        .collect();
    within(WAIT * 3, "events on every stream", async {
        while got.values().any(|v| v.len() < n) {
            let f = ws.recv_json_skip_pings(WAIT).await?;
            match f["type"].as_str() {
                Some("event") => {
                    let event = Got::ws(&f, topic)?;
                    let stream = f["stream"].as_str().unwrap_or_default().to_owned();
                    got.entry(stream).or_default().push(event);
                }
                Some("gap" | "closed" | "error") => anyhow::bail!("unexpected frame {f}"),
                _ => {}
            }
        }
        Ok(())
    })
    .await?;
    Ok(got)
}

/// The next event of a single-stream connection, with whether a `gap` for
/// `topic` came before it.
pub async fn ws_next_after_gap(ws: &mut WsClient, topic: &str) -> anyhow::Result<(bool, Got)> {
    let mut gap = false;
    loop {
        let f = ws.recv_json_skip_pings(WAIT).await?;
        match f["type"].as_str() {
            Some("gap") => {
                anyhow::ensure!(f["topics"] == json!([topic]), "gap names {f}");
                gap = true;
            }
            Some("event") => {
                return Ok((gap, Got::ws(&f, topic)?));
            }
            _ => anyhow::bail!("unexpected frame {f}"),
        }
    }
}

/// `n` SSE events of `topic`; fails on `gap` or `closed`.
pub async fn sse_events(sse: &mut SseClient, topic: &str, n: usize) -> anyhow::Result<Vec<Got>> {
    let mut got = Vec::new();
    while got.len() < n {
        let e = sse.next_event(WAIT).await?;
        anyhow::ensure!(e.event.is_none(), "unexpected SSE event {e:?}");
        got.push(Got::sse(&e, topic)?);
    }
    Ok(got)
}

/// The next SSE event of `topic`, with whether a `gap` came before it.
pub async fn sse_next_after_gap(sse: &mut SseClient, topic: &str) -> anyhow::Result<(bool, Got)> {
    let mut gap = false;
    loop {
        let e = sse.next_event(WAIT).await?;
        match e.event.as_deref() {
            Some("gap") => {
                anyhow::ensure!(e.json()?["topics"] == json!([topic]), "gap names {e:?}");
                gap = true;
            }
            None => {
                return Ok((gap, Got::sse(&e, topic)?));
            }
            Some(_) => anyhow::bail!("unexpected SSE event {e:?}"),
        }
    }
}

pub fn ids(got: &[Got]) -> Vec<String> {
    got.iter().map(|g| g.id.clone()).collect()
}

pub fn epoch(cursor: &str) -> String {
    parse_cursor(cursor).map(|(e, _)| e).unwrap_or_default()
}

/// Runs a scenario on a runtime whose threads have room for its deep
/// futures (debug builds need more than a test thread's 2 MiB).
pub fn run(
    scenario: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(16 << 20)
        .enable_all()
        .build()?
        .block_on(async { tokio::spawn(scenario).await? })
}

//! Shared by the capability tests (capabilities.rs, timers.rs, sinks.rs,
//! capacity.rs): the real gateway with app `caps` served by
//! tests/php/capabilities.php, which does what each open's params say and
//! logs every event it is given.

#![allow(dead_code)] // each test file uses a part of this module

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use test_support::{gateway_with_config, Metrics};
use test_support::{publish, within, Gateway, LoggingPhp, WsClient, WAIT};

pub const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
pub const APP: &str = "caps";

/// A gateway whose app `caps` is tests/php/capabilities.php.
pub struct Caps {
    pub gateway: Gateway,
    lambda: LoggingPhp,
}

impl Caps {
    /// Default settings, app `caps` only.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| String::new(), &[]).await
    }

    /// `config(dir)` gives the TOML config file's text (it may name files in
    /// `dir`); `args` are extra `serve` flags. App `caps` comes from `--app`.
    pub async fn start_with(
        config: impl FnOnce(&Path) -> String,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let lambda = LoggingPhp::start("switchboard-caps", "capabilities.php", &[]).await?;
        let dir = lambda.dir();
        let app = format!("{APP}={}", lambda.url());
        let mut all = vec!["--app", app.as_str()];
        all.extend_from_slice(args);
        let gateway = gateway_with_config(BIN, dir, &config(dir.path()), &all).await?;
        Ok(Self { gateway, lambda })
    }

    /// The temp dir of this gateway (for files its config names).
    pub fn dir(&self) -> &Path {
        self.lambda.dir().path()
    }

    pub fn url(&self) -> String {
        self.gateway.http_url()
    }

    /// A new WebSocket connection with `stream` opened on app `caps`.
    pub async fn open(&self, stream: &str, params: Value) -> anyhow::Result<WsClient> {
        let mut ws = WsClient::connect(&self.gateway.ws_url("/v1/ws")).await?;
        let reply = ws.open(stream, APP, params).await?;
        anyhow::ensure!(reply["type"] == "opened", "open refused: {reply}");
        Ok(ws)
    }

    /// Every event the lambda was given so far.
    pub fn log(&self) -> Vec<Value> {
        self.lambda.events()
    }

    /// The lambda's events of `kind` for streams opened with `tag`.
    pub fn events(&self, kind: &str, tag: &str) -> Vec<Value> {
        self.log()
            .into_iter()
            .filter(|e| e["type"] == kind && e["tag"] == tag)
            .collect()
    }

    /// Publishes one message (with a `dedup_key` if given); returns its id.
    pub async fn publish(
        &self,
        topic: &str,
        data: Value,
        dedup_key: Option<&str>,
    ) -> anyhow::Result<String> {
        let mut body = json!({ "topic": topic, "data": data });
        if let Some(k) = dedup_key {
            body["dedup_key"] = json!(k);
        }
        let (status, answer) = publish(&self.url(), None, &body).await?;
        anyhow::ensure!(status == 200, "publish answered {status}: {answer}");
        answer["id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no id in {answer}"))
    }

    pub async fn metrics(&self) -> anyhow::Result<Metrics> {
        Metrics::fetch(&self.url()).await
    }

    /// A per-app counter of app `caps` from `/metrics`.
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        Ok(self.metrics().await?.app(name, APP))
    }
}

/// The next `event` frame of `stream` (any event name), skipping other frames.
pub async fn next_event(ws: &mut WsClient, stream: &str) -> anyhow::Result<Value> {
    ws.recv_until(|v| v["type"] == "event" && v["stream"] == stream, WAIT)
        .await
}

/// The next `event` frame of `stream` named `name`.
pub async fn next_named(ws: &mut WsClient, stream: &str, name: &str) -> anyhow::Result<Value> {
    ws.recv_until(
        |v| v["type"] == "event" && v["stream"] == stream && v["event"] == name,
        WAIT,
    )
    .await
}

/// Sends `data` as a client message on `stream` and waits for the lambda's `ack`.
pub async fn command(ws: &mut WsClient, stream: &str, data: Value) -> anyhow::Result<Value> {
    ws.send_json(&json!({"type": "send", "stream": stream, "data": data}))
        .await?;
    next_named(ws, stream, "ack").await
}

/// Event frames of `stream` until one satisfies `last` (included), bounded by `limit`.
pub async fn events_until(
    ws: &mut WsClient,
    stream: &str,
    limit: Duration,
    mut last: impl FnMut(&Value) -> bool,
) -> anyhow::Result<Vec<Value>> {
    let mut got = Vec::new();
    within(limit, "events up to the expected last one", async {
        loop {
            let frame = ws
                .recv_until(
                    |v| v["type"] == "event" && v["stream"] == stream,
                    Duration::MAX,
                )
                .await?;
            let done = last(&frame);
            got.push(frame);
            if done {
                return Ok(());
            }
        }
    })
    .await
    .with_context(|| format!("events so far: {got:?}"))?;
    Ok(got)
}

/// Polls the per-app counter `name` of app `caps` until `pred` holds.
pub async fn wait_metric(
    caps: &Caps,
    name: &str,
    pred: impl Fn(f64) -> bool,
) -> anyhow::Result<f64> {
    test_support::wait_app_metric(&caps.url(), name, APP, WAIT, pred).await
}

/// Milliseconds since the Unix epoch (to compare with `fired_at_ms`).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

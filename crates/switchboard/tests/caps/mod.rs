//! Shared by the capability tests (capabilities.rs, timers.rs, sinks.rs,
//! capacity.rs): the real gateway with app `caps` served by
//! tests/php/capabilities.php, which does what each open's params say and
//! logs every event it is given, plus `php -S` on a chosen port (an HTTP
//! sink's receiver that comes up late).

#![allow(dead_code)] // each test file uses a part of this module

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use test_support::extra::{read_json_lines, write_config, Metrics};
use test_support::{publish, within, Gateway, PhpServer, TempDir, WsClient, WAIT};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
pub const APP: &str = "caps";

pub fn php_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/php")
        .join(name)
}

/// A gateway whose app `caps` is tests/php/capabilities.php.
pub struct Caps {
    pub gateway: Gateway,
    _php: PhpServer,
    pub log: PathBuf,
    pub dir: TempDir,
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
        let dir = TempDir::new("switchboard-caps")?;
        let log = dir.path().join("lambda.log");
        let php = PhpServer::start_with_env(
            &php_script("capabilities.php"),
            &[("LAMBDA_LOG", log.to_str().context("UTF-8 temp path")?)],
        )
        .await?;
        let config = write_config(&dir, &config(dir.path()))?;
        let app = format!("{APP}={}", php.url());
        let mut all = vec![
            "--config",
            config.to_str().context("UTF-8 temp path")?,
            "--app",
            &app,
        ];
        all.extend_from_slice(args);
        let gateway = Gateway::start(BIN, &all).await?;
        Ok(Self {
            gateway,
            _php: php,
            log,
            dir,
        })
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
        read_json_lines(&self.log)
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
    test_support::extra::wait_app_metric(&caps.url(), name, APP, WAIT, pred).await
}

/// `php -S 127.0.0.1:PORT script` on a port the test chose (a receiver that
/// comes up after the gateway already points at it); killed when dropped.
pub struct PhpOnPort {
    _child: Child,
}

impl PhpOnPort {
    pub async fn start(port: u16, script: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut child = Command::new("php")
            .args(["-d", "display_errors=stderr"])
            .arg("-S")
            .arg(format!("127.0.0.1:{port}"))
            .arg(script)
            .envs(env.iter().copied())
            .env_remove("PHP_CLI_SERVER_WORKERS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("spawning php -S (is php-cli installed?)")?;
        within(WAIT, "php -S to accept connections", async {
            loop {
                if let Some(status) = child.try_wait()? {
                    anyhow::bail!("php -S on port {port} exited at start: {status}");
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
        .await?;
        Ok(Self { _child: child })
    }
}

/// Milliseconds since the Unix epoch (to compare with `fired_at_ms`).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

//! Configuration: the TOML file's raw shape, merged with flags and env, then
//! validated into typed settings before anything binds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use switchboard_protocol::AppName;

use crate::cli::ServeArgs;
use crate::ops::secret::{redact_url, Secret};
use crate::stream::topics::TopicPatterns;
use crate::tls::CaFile;

mod edge;
mod history;
mod metrics;
pub use edge::{EdgeConfig, RawHttp};
pub use history::{RawHistory, RawHistoryPrefix};
pub use metrics::MetricsAuth;

/// Keys of the config file. Every field is optional; defaults are in [`Config`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub broker: Option<String>,
    pub publish_key: Option<String>,
    pub admin_key: Option<String>,
    /// A file holding the publish key (trimmed). Not together with `publish_key`.
    pub publish_key_file: Option<std::path::PathBuf>,
    /// A file holding the admin key (trimmed). Not together with `admin_key`.
    pub admin_key_file: Option<std::path::PathBuf>,
    pub allow_anonymous_publish: Option<bool>,
    /// Serve `GET /metrics` on this address (IP:PORT) instead of `listen`. Default: on `listen`.
    pub metrics_listen: Option<String>,
    /// `none` (default): /metrics is open to whoever reaches it; `admin_key`:
    /// it needs `Authorization: Bearer <admin key>`.
    pub metrics_auth: Option<MetricsAuth>,
    pub log: Option<String>,
    /// PEM CA certificates that `tls://` NATS and `rediss://` Redis must be
    /// signed by, instead of the system's roots. Default none.
    pub broker_ca_file: Option<std::path::PathBuf>,
    /// PEM CA certificates that `https://` lambdas and sinks must be signed
    /// by, instead of the system's roots. Default none.
    pub lambda_ca_file: Option<std::path::PathBuf>,
    /// Milliseconds a drain may take after SIGTERM/SIGINT. Default 10000.
    pub drain_timeout_ms: Option<u64>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub apps: BTreeMap<String, RawApp>,
    /// Sinks for the `buffer` action, by name.
    #[serde(default)]
    pub sinks: BTreeMap<String, RawSink>,
    /// Timeouts, caps, proxies and origins of the HTTP listener.
    #[serde(default)]
    pub http: RawHttp,
    /// History bounds per topic (and per topic prefix) and per node.
    #[serde(default)]
    pub history: RawHistory,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    /// `file` (JSON lines, rotating) or `http` (batched POST of a JSON array).
    pub kind: String,
    /// file: the path to append to.
    pub path: Option<std::path::PathBuf>,
    /// file: rotate at this size, bytes. Default 67108864 (64 MiB).
    pub max_bytes: Option<u64>,
    /// file: rotated files kept (`path.1` .. `path.N`). Default 3.
    pub keep: Option<u32>,
    /// http: the URL to POST batches to.
    pub url: Option<String>,
    /// http: per-request timeout, ms. Default 5000.
    pub timeout_ms: Option<u64>,
    /// Records per flush. Default 500.
    pub batch_size: Option<usize>,
    /// Flush at least this often, ms. Default 1000.
    pub flush_interval_ms: Option<u64>,
    /// Records kept while the target is down; past it the oldest are dropped (counted). Default 100000.
    pub max_buffer: Option<usize>,
    /// Bytes of records kept while the target is down (the batch being
    /// written included); past it the oldest are dropped (counted). Default 16777216 (16 MiB).
    pub max_buffer_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Largest client frame in bytes. Default 65536.
    pub max_frame_bytes: Option<usize>,
    /// Streams one WebSocket connection may hold. Default 100.
    pub max_streams_per_connection: Option<usize>,
    /// Largest serialized stream state in bytes. Default 16384.
    pub max_state_bytes: Option<usize>,
    /// Topic messages queued per connection before the slow-consumer policy applies. Default 1024.
    pub outbound_queue: Option<usize>,
    /// Keepalive ping interval in milliseconds. Default 30000. A WebSocket
    /// client silent for two intervals (no frame, no pong) is closed with `timeout`.
    pub keepalive_ms: Option<u64>,
    /// A write to a client that makes no progress for this long closes it
    /// with `timeout`, ms. Default 10000.
    pub write_timeout_ms: Option<u64>,
    /// When a connection's queue of topic messages is full: `close` its
    /// streams with `slow_consumer` (default), or `drop_oldest` and send `gap`.
    pub slow_consumer: Option<SlowConsumer>,
    /// Shortest `timer` interval a lambda may ask for, ms. Default 100.
    pub min_timer_ms: Option<u64>,
    /// Window in which a repeated publish `dedup_key` is not published again, ms. Default 120000.
    pub publish_dedup_window_ms: Option<u64>,
    /// Topics one stream may follow. Default 128.
    pub max_topics_per_stream: Option<usize>,
    /// Bytes of `send` data one connection may have waiting for lambdas
    /// before its socket is no longer read. Default 1048576 (1 MiB).
    pub max_queued_send_bytes: Option<usize>,
    /// Opens one connection may make per second (burst as many). Default 50.
    pub max_opens_per_second: Option<u32>,
    /// Events of one connection waiting for or in a lambda call before its
    /// socket is no longer read. Default 256.
    pub max_lambda_jobs_per_connection: Option<usize>,
    /// Lambda publishes one chain of messages may pass through (a lambda
    /// publishing to a topic it follows); past it the publish is dropped. Default 8.
    pub max_publish_hops: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    /// The lambda's URL, or "direct" for an app without a lambda.
    pub lambda: String,
    /// Per-call timeout, ms. Default 5000.
    pub timeout_ms: Option<u64>,
    /// Retries after a failed call. Default 2.
    pub retries: Option<u32>,
    /// First retry delay, ms, doubled each retry, with jitter. Default 50.
    pub backoff_ms: Option<u64>,
    /// `drop` | `deliver_raw` | `close`. Default `drop`.
    pub on_failure: Option<OnFailure>,
    /// Most events in one lambda request. Default 100.
    pub max_batch: Option<usize>,
    /// How long to gather events into a batch, microseconds. Default 500.
    pub batch_window_us: Option<u64>,
    /// Lambda requests in flight at once for this app. Default 64.
    pub max_concurrency: Option<usize>,
    /// Failed lambda requests in a row that open the circuit breaker. Default 5.
    pub circuit_failures: Option<u32>,
    /// How long an open circuit fails calls at once before one trial, ms. Default 5000.
    pub circuit_cooldown_ms: Option<u64>,
    /// Request headers forwarded in `open` events. Default authorization, cookie, user-agent, accept-language.
    pub forward_headers: Option<Vec<String>>,
    /// Topic patterns (exact, or a trailing `*`) the app's streams may follow.
    pub topics: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SlowConsumer {
    #[default]
    Close,
    DropOldest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    #[default]
    Drop,
    DeliverRaw,
    Close,
}

/// Validated settings of the whole gateway.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `/metrics` on its own listener (and not on `listen`).
    pub metrics_listen: Option<SocketAddr>,
    pub metrics_auth: MetricsAuth,
    pub broker: BrokerUrl,
    pub publish_key: Option<Secret>,
    pub admin_key: Option<Secret>,
    pub log: String,
    pub drain_timeout: Duration,
    pub limits: Limits,
    pub apps: Vec<AppConfig>,
    pub sinks: Vec<crate::capability::sink::SinkConfig>,
    /// Print each lambda exchange to stdout (`switchboard dev` / `serve --dev`).
    pub dev: bool,
    /// Publishing without a key from a client address that is not loopback.
    pub allow_anonymous_publish: bool,
    /// Test only: serve the WebSocket echo endpoint `/v1/_echo` (loopback only).
    pub ws_echo: bool,
    pub edge: EdgeConfig,
    pub history: crate::broker::history::HistoryPolicy,
    /// Roots for a TLS broker; None: the system's.
    pub broker_ca: Option<CaFile>,
    /// Roots for https lambdas and sinks; None: the system's.
    pub lambda_ca: Option<CaFile>,
}

#[derive(Clone)]
pub enum BrokerUrl {
    Memory,
    /// `nats://[user:pass@]HOST:PORT` (`tls://` for TLS): NATS with JetStream.
    Nats(String),
    /// `redis://[user:pass@]HOST:PORT[/DB]` (`rediss://` for TLS).
    Redis(String),
}

/// Shows the URL without its credentials.
impl std::fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::Nats(url) => write!(f, "Nats({})", redact_url(url)),
            Self::Redis(url) => write!(f, "Redis({})", redact_url(url)),
        }
    }
}

impl BrokerUrl {
    /// `memory`, `nats://...` (`tls://...`) or `redis://...` (`rediss://...`),
    /// checked for this build's features.
    /// Errors show the URL without its credentials.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        if url == "memory" {
            return Ok(Self::Memory);
        }
        let text = &redact_url(url);
        let (scheme, rest) = url.split_once("://").with_context(|| {
            format!("broker {text:?} is not memory, nats://HOST:PORT or redis://HOST:PORT")
        })?;
        let host = rest.rsplit('@').next().unwrap_or_default();
        let host = host.split('/').next().unwrap_or_default();
        if host.is_empty() {
            bail!("broker {text:?} names no host");
        }
        match scheme {
            "nats" | "tls" if cfg!(feature = "nats") => Ok(Self::Nats(url.to_owned())),
            "redis" | "rediss" if cfg!(feature = "redis") => Ok(Self::Redis(url.to_owned())),
            "nats" | "tls" => {
                bail!("broker {text:?}: this build has no NATS support (cargo feature `nats`)")
            }
            "redis" | "rediss" => {
                bail!("broker {text:?}: this build has no Redis support (cargo feature `redis`)")
            }
            _ => bail!("broker {text:?} is not memory, nats://HOST:PORT or redis://HOST:PORT"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub max_streams_per_connection: usize,
    pub max_state_bytes: usize,
    pub outbound_queue: usize,
    pub keepalive: Duration,
    pub write_timeout: Duration,
    pub slow_consumer: SlowConsumer,
    pub min_timer: Duration,
    pub publish_dedup_window: Duration,
    pub max_topics_per_stream: usize,
    pub max_queued_send_bytes: usize,
    pub max_opens_per_second: u32,
    pub max_lambda_jobs_per_connection: usize,
    pub max_publish_hops: u8,
}

#[derive(Debug, Clone)]
pub struct AppConfig {
    pub name: AppName,
    /// None: a direct app without a lambda.
    pub lambda: Option<LambdaConfig>,
    /// None: any topic (a direct app only when no lambda app runs beside it).
    pub topics: Option<TopicPatterns>,
}

#[derive(Debug, Clone)]
pub struct LambdaConfig {
    pub url: hyper::Uri,
    pub timeout: Duration,
    pub retries: u32,
    pub backoff: Duration,
    pub on_failure: OnFailure,
    pub max_batch: usize,
    pub batch_window: Duration,
    pub max_concurrency: usize,
    pub circuit_failures: u32,
    pub circuit_cooldown: Duration,
    pub forward_headers: Vec<String>,
}

const DEFAULT_HEADERS: [&str; 5] = [
    "authorization",
    "cookie",
    "user-agent",
    "accept-language",
    "origin",
];

impl Config {
    /// Reads the file named by the flags (if any), applies flags and env, validates.
    pub fn load(args: &ServeArgs) -> anyhow::Result<Self> {
        let raw = match &args.config {
            Some(path) => read_file(path)?,
            None => RawConfig::default(),
        };
        Self::from_parts(raw, args)
    }

    pub fn from_parts(mut raw: RawConfig, args: &ServeArgs) -> anyhow::Result<Self> {
        for spec in &args.apps {
            let (name, url) = spec.split_once('=').with_context(|| {
                format!("--app {spec:?}: expected NAME=LAMBDA_URL or NAME=direct")
            })?;
            // The flag wins for the lambda URL only: the file's other
            // settings for the same app (batching, timeouts...) still apply.
            raw.apps.entry(name.to_owned()).or_default().lambda = url.to_owned();
        }
        if raw.apps.is_empty() {
            raw.apps.insert(
                "pubsub".into(),
                RawApp {
                    lambda: "direct".into(),
                    ..RawApp::default()
                },
            );
        }
        let listen_text = args
            .listen
            .clone()
            .or(raw.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_text
            .parse()
            .with_context(|| format!("listen address {listen_text:?} is not IP:PORT"))?;
        let broker = BrokerUrl::parse(
            args.broker
                .as_deref()
                .or(raw.broker.as_deref())
                .unwrap_or("memory"),
        )?;
        let publish_key = key(
            "publish key",
            (args.publish_key.clone(), args.publish_key_file.as_deref()),
            (raw.publish_key, raw.publish_key_file.as_deref()),
        )?;
        let admin_key = key(
            "admin key",
            (args.admin_key.clone(), args.admin_key_file.as_deref()),
            (raw.admin_key, raw.admin_key_file.as_deref()),
        )?;
        let (metrics_listen, metrics_auth) = metrics::listener(
            args,
            (raw.metrics_listen.as_deref(), raw.metrics_auth),
            listen,
            admin_key.is_some(),
        )?;
        let anonymous =
            args.allow_anonymous_publish || raw.allow_anonymous_publish.unwrap_or(false);
        if publish_key.is_none() && !listen.ip().is_loopback() && !anonymous {
            bail!(
                "listening on {listen} (not loopback) needs a publish key (--publish-key) \
                 or an explicit --allow-anonymous-publish"
            );
        }
        if args.ws_echo && !listen.ip().is_loopback() {
            bail!(
                "--ws-echo is for tests only and needs a loopback listener, not {listen}: \
                 the echo endpoint answers anyone who reaches it"
            );
        }
        let l = raw.limits;
        let limits = Limits {
            max_frame_bytes: positive(l.max_frame_bytes, 64 * 1024, "limits.max_frame_bytes")?,
            max_streams_per_connection: positive(
                l.max_streams_per_connection,
                100,
                "limits.max_streams_per_connection",
            )?,
            max_state_bytes: positive(l.max_state_bytes, 16 * 1024, "limits.max_state_bytes")?,
            outbound_queue: positive(l.outbound_queue, 1024, "limits.outbound_queue")?,
            keepalive: Duration::from_millis(positive(
                l.keepalive_ms,
                30_000,
                "limits.keepalive_ms",
            )?),
            write_timeout: Duration::from_millis(positive(
                l.write_timeout_ms,
                10_000,
                "limits.write_timeout_ms",
            )?),
            slow_consumer: l.slow_consumer.unwrap_or_default(),
            min_timer: Duration::from_millis(l.min_timer_ms.unwrap_or(100)),
            publish_dedup_window: Duration::from_millis(
                l.publish_dedup_window_ms.unwrap_or(120_000),
            ),
            max_topics_per_stream: positive(
                args.max_topics_per_stream.or(l.max_topics_per_stream),
                128,
                "limits.max_topics_per_stream",
            )?,
            max_queued_send_bytes: positive(
                args.max_queued_send_bytes.or(l.max_queued_send_bytes),
                1 << 20,
                "limits.max_queued_send_bytes",
            )?,
            max_opens_per_second: positive(
                args.max_opens_per_second.or(l.max_opens_per_second),
                50,
                "limits.max_opens_per_second",
            )?,
            max_lambda_jobs_per_connection: positive(
                args.max_lambda_jobs_per_connection
                    .or(l.max_lambda_jobs_per_connection),
                256,
                "limits.max_lambda_jobs_per_connection",
            )?,
            max_publish_hops: positive(
                args.max_publish_hops.or(l.max_publish_hops),
                8,
                "limits.max_publish_hops",
            )?,
        };
        let apps: Vec<AppConfig> = raw
            .apps
            .into_iter()
            .map(|(name, app)| app_config(&name, app))
            .collect::<Result<_, _>>()?;
        open_direct_apps_alone(&apps)?;
        let sinks = raw
            .sinks
            .into_iter()
            .map(|(name, sink)| sink_config(name, sink))
            .collect::<Result<_, _>>()?;
        let edge = EdgeConfig::from_parts(raw.http, &args.edge)?;
        let history = history::policy(raw.history, &args.history)?;
        let ca = |flag: &Option<std::path::PathBuf>, file: Option<std::path::PathBuf>, key| {
            flag.clone()
                .or(file)
                .map(|path| CaFile::load(&path, key))
                .transpose()
        };
        let broker_ca = ca(&args.broker_ca_file, raw.broker_ca_file, "broker_ca_file")?;
        let lambda_ca = ca(&args.lambda_ca_file, raw.lambda_ca_file, "lambda_ca_file")?;
        Ok(Self {
            history,
            metrics_listen,
            metrics_auth,
            broker_ca,
            lambda_ca,
            dev: args.dev,
            sinks,
            allow_anonymous_publish: anonymous,
            ws_echo: args.ws_echo,
            edge,

            listen,
            broker,
            publish_key,
            admin_key,
            log: args
                .log
                .clone()
                .or(raw.log)
                .unwrap_or_else(|| "info".into()),
            drain_timeout: Duration::from_millis(raw.drain_timeout_ms.unwrap_or(10_000)),
            limits,
            apps,
        })
    }
}

fn sink_config(name: String, raw: RawSink) -> anyhow::Result<crate::capability::sink::SinkConfig> {
    use crate::capability::sink::{SinkConfig, SinkTarget};
    let target = match raw.kind.as_str() {
        "file" => SinkTarget::File {
            path: raw
                .path
                .with_context(|| format!("sink {name}: a file sink needs `path`"))?,
            max_bytes: raw.max_bytes.unwrap_or(64 << 20),
            keep: raw.keep.unwrap_or(3),
        },
        "http" => {
            let url = raw
                .url
                .with_context(|| format!("sink {name}: an http sink needs `url`"))?;
            let parsed: hyper::Uri = url
                .parse()
                .with_context(|| format!("sink {name}: url {url:?}"))?;
            if !is_http_url(&parsed) {
                bail!("sink {name}: url {url:?} must be http(s)://HOST[:PORT]/PATH");
            }
            SinkTarget::Http {
                url: parsed,
                timeout: Duration::from_millis(raw.timeout_ms.unwrap_or(5_000)),
            }
        }
        other => bail!("sink {name}: kind {other:?} is not `file` or `http`"),
    };
    Ok(SinkConfig {
        name: name.clone(),
        target,
        batch_size: positive(raw.batch_size, 500, "sink batch_size")?,
        flush_interval: Duration::from_millis(positive(
            raw.flush_interval_ms,
            1_000,
            "sink flush_interval_ms",
        )?),
        max_buffer: positive(raw.max_buffer, 100_000, "sink max_buffer")?,
        max_buffer_bytes: positive(raw.max_buffer_bytes, 16 << 20, "sink max_buffer_bytes")?,
    })
}

/// `http://` or `https://` with a host: what the lambda client can reach.
fn is_http_url(url: &hyper::Uri) -> bool {
    matches!(url.scheme_str(), Some("http" | "https")) && url.host().is_some()
}

/// A key from one level (flags and env) or the other (the file): the
/// first level that names one wins; naming it twice at one level is an error.
fn key(
    what: &str,
    args: (Option<String>, Option<&Path>),
    file: (Option<String>, Option<&Path>),
) -> anyhow::Result<Option<Secret>> {
    for level in [args, file] {
        match level {
            (Some(_), Some(_)) => {
                bail!("the {what} is given both as a value and as a file: give one")
            }
            (Some(text), None) => return Ok(Secret::new(text)),
            (None, Some(path)) => return Secret::from_file(path, what).map(Some),
            (None, None) => {}
        }
    }
    Ok(None)
}

fn read_file(path: &Path) -> anyhow::Result<RawConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("config {}: {}", path.display(), toml_error(&text, &e)))
}

/// Where and what, without the line itself: the line may hold a key.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return e.message().to_owned();
    };
    let before = &text.as_bytes()[..span.start.min(text.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    format!("line {line}, column {column}: {}", e.message())
}

fn positive<T: Default + PartialEq + Copy + std::fmt::Display>(
    v: Option<T>,
    default: T,
    key: &str,
) -> anyhow::Result<T> {
    match v {
        Some(v) if v == T::default() => bail!("{key} must be greater than 0"),
        Some(v) => Ok(v),
        None => Ok(default),
    }
}

/// A direct app without `topics` lets its clients read any topic: only
/// when no lambda app's topics are there to be read.
fn open_direct_apps_alone(apps: &[AppConfig]) -> anyhow::Result<()> {
    let Some(lambda_app) = apps.iter().find(|a| a.lambda.is_some()) else {
        return Ok(());
    };
    if let Some(open) = apps
        .iter()
        .find(|a| a.lambda.is_none() && a.topics.is_none())
    {
        bail!(
            "app {}: a direct app next to a lambda app (here {}) needs `topics`, \
             the patterns its clients may read (e.g. topics = [\"news\", \"scores/*\"]); \
             without it they could read and resume every topic of the lambda apps",
            open.name,
            lambda_app.name
        );
    }
    Ok(())
}

fn app_config(name: &str, raw: RawApp) -> anyhow::Result<AppConfig> {
    let name = AppName::new(name).with_context(|| format!("app {name:?}"))?;
    let topics = raw
        .topics
        .as_deref()
        .map(TopicPatterns::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("app {name}: topics: {e}"))?;
    if raw.lambda == "direct" {
        return Ok(AppConfig {
            name,
            lambda: None,
            topics,
        });
    }
    let url: hyper::Uri = raw
        .lambda
        .parse()
        .with_context(|| format!("app {name}: lambda URL {:?}", raw.lambda))?;
    if !is_http_url(&url) {
        bail!(
            "app {name}: lambda URL {:?} must be http(s)://HOST[:PORT]/PATH (or `direct`)",
            raw.lambda
        );
    }
    let lambda = LambdaConfig {
        url,
        timeout: Duration::from_millis(positive(raw.timeout_ms, 5_000, "timeout_ms")?),
        retries: raw.retries.unwrap_or(2),
        backoff: Duration::from_millis(raw.backoff_ms.unwrap_or(50)),
        on_failure: raw.on_failure.unwrap_or_default(),
        max_batch: positive(raw.max_batch, 100, "max_batch")?,
        batch_window: Duration::from_micros(raw.batch_window_us.unwrap_or(500)),
        max_concurrency: positive(raw.max_concurrency, 64, "max_concurrency")?,
        circuit_failures: positive(raw.circuit_failures, 5, "circuit_failures")?,
        circuit_cooldown: Duration::from_millis(raw.circuit_cooldown_ms.unwrap_or(5_000)),
        forward_headers: raw
            .forward_headers
            .unwrap_or_else(|| DEFAULT_HEADERS.iter().map(|h| h.to_string()).collect())
            .into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
    };
    Ok(AppConfig {
        name,
        lambda: Some(lambda),
        topics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServeArgs {
        ServeArgs::default()
    }

    #[test]
    fn broker_urls_parse() {
        assert!(matches!(BrokerUrl::parse("memory"), Ok(BrokerUrl::Memory)));
        let bad = ["", "memory2", "nats://", "kafka://h:1", "redis://u:p@/0"];
        for bad in bad {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
        }
        let nats = BrokerUrl::parse("nats://127.0.0.1:4222");
        let redis = BrokerUrl::parse("redis://u:p@10.0.0.1:6379/2");
        assert_eq!(nats.is_ok(), cfg!(feature = "nats"));
        assert_eq!(redis.is_ok(), cfg!(feature = "redis"));
    }

    #[test]
    fn bare_start_runs_pubsub_on_loopback() {
        let c = Config::from_parts(RawConfig::default(), &args()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.apps.len(), 1);
        assert_eq!(c.apps[0].name.as_str(), "pubsub");
        assert!(c.apps[0].lambda.is_none());
    }

    #[test]
    fn flags_win_over_file() {
        let raw: RawConfig = toml::from_str(
            "listen = \"127.0.0.1:9000\"\n[apps.a]\nlambda = \"http://127.0.0.1:1/x\"\nmax_batch = 7\non_failure = \"close\"\n",
        )
        .unwrap();
        let mut a = args();
        a.listen = Some("127.0.0.1:9001".into());
        let c = Config::from_parts(raw, &a).unwrap();
        assert_eq!(c.listen.port(), 9001);
        let l = c.apps[0].lambda.as_ref().unwrap();
        assert_eq!(l.max_batch, 7);
        assert_eq!(l.on_failure, OnFailure::Close);
    }

    #[test]
    fn an_app_flag_replaces_only_the_lambda_url_of_the_files_app() {
        let raw: RawConfig = toml::from_str(
            "[apps.a]\nlambda = \"http://127.0.0.1:1/x\"\nmax_batch = 7\n\
             [apps.b]\nlambda = \"http://127.0.0.1:1/z\"\ntopics = [\"b/*\"]\n",
        )
        .unwrap();
        let mut a = args();
        a.apps = vec!["a=http://127.0.0.1:2/y".into(), "b=direct".into()];
        let c = Config::from_parts(raw, &a).unwrap();
        let app_a = c.apps.iter().find(|x| x.name.as_str() == "a").unwrap();
        let l = app_a.lambda.as_ref().unwrap();
        assert_eq!(l.max_batch, 7);
        assert!(l.url.to_string().contains(":2/y"), "{:?}", l.url);
        let app_b = c.apps.iter().find(|x| x.name.as_str() == "b").unwrap();
        assert!(app_b.lambda.is_none());
        assert!(app_b.topics.is_some(), "the file's topics stay");
    }

    #[test]
    fn a_direct_app_beside_a_lambda_app_needs_topics() {
        let lambda = "[apps.l]\nlambda = \"http://127.0.0.1:1/x\"\n";
        let open = format!("{lambda}[apps.d]\nlambda = \"direct\"\n");
        let err = Config::from_parts(toml::from_str(&open).unwrap(), &args()).unwrap_err();
        assert!(format!("{err:#}").contains("needs `topics`"), "{err:#}");
        let bound = format!("{open}topics = [\"news\", \"scores/*\"]\n");
        let c = Config::from_parts(toml::from_str(&bound).unwrap(), &args()).unwrap();
        let d = c.apps.iter().find(|a| a.name.as_str() == "d").unwrap();
        assert!(d.topics.as_ref().is_some_and(|t| t.allows("scores/1")));
        let bad = format!("{open}topics = [\"sc*res\"]\n");
        assert!(Config::from_parts(toml::from_str(&bad).unwrap(), &args()).is_err());
        // Direct apps alone may stay open; so does the bare install.
        let alone = "[apps.d]\nlambda = \"direct\"\n[apps.e]\nlambda = \"direct\"\n";
        assert!(Config::from_parts(toml::from_str(alone).unwrap(), &args()).is_ok());
        let l = Config::from_parts(RawConfig::default(), &args())
            .unwrap()
            .limits;
        assert_eq!(
            (
                l.max_topics_per_stream,
                l.max_queued_send_bytes,
                l.max_opens_per_second
            ),
            (128, 1 << 20, 50)
        );
        assert_eq!(l.max_lambda_jobs_per_connection, 256);
        assert_eq!(l.max_publish_hops, 8);
        let hops = "[limits]\nmax_publish_hops = 0\n";
        assert!(Config::from_parts(toml::from_str(hops).unwrap(), &args()).is_err());
    }

    #[test]
    fn file_errors_name_the_place_but_not_the_line() {
        let dir = std::env::temp_dir().join(format!("sb-config-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        for (text, at) in [
            (
                "listen = \"127.0.0.1:0\"\npublish_key = [\"s3cret\"]\n",
                "line 2, column 15",
            ),
            ("admin_key = \"s3cret\" extra\n", "line 1, column 22"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = format!("{:#}", read_file(&path).unwrap_err());
            assert!(!err.contains("s3cret"), "{err}");
            assert!(err.contains(at), "{err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refusals() {
        assert!(toml::from_str::<RawConfig>("nope = 1").is_err());
        let mut a = args();
        a.listen = Some("0.0.0.0:8080".into());
        assert!(Config::from_parts(RawConfig::default(), &a).is_err());
        a.allow_anonymous_publish = true;
        assert!(Config::from_parts(RawConfig::default(), &a).is_ok());
        let mut a = args();
        a.apps = vec!["Bad=direct".into()];
        assert!(Config::from_parts(RawConfig::default(), &a).is_err());
        a.apps = vec!["ok=ftp://x".into()];
        assert!(Config::from_parts(RawConfig::default(), &a).is_err());
        a.apps = vec!["ok".into()];
        assert!(Config::from_parts(RawConfig::default(), &a).is_err());
    }

    #[test]
    fn the_test_only_echo_endpoint_needs_a_loopback_listener() {
        let mut a = args();
        a.ws_echo = true;
        assert!(
            Config::from_parts(RawConfig::default(), &a)
                .unwrap()
                .ws_echo
        );
        a.listen = Some("0.0.0.0:8080".into());
        a.allow_anonymous_publish = true;
        let err = Config::from_parts(RawConfig::default(), &a).unwrap_err();
        assert!(format!("{err:#}").contains("--ws-echo"), "{err:#}");
        assert!(
            !Config::from_parts(RawConfig::default(), &args())
                .unwrap()
                .ws_echo
        );
    }
}

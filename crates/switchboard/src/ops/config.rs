//! Configuration: the TOML file's raw shape, merged with flags and env, then
//! validated into typed settings before anything binds.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use switchboard_protocol::AppName;

use crate::cli::ServeArgs;
use crate::ops::secret::{redact_url, Secret};
use crate::stream::topics::TopicPatterns;
use crate::tls::CaFile;

mod edge;
mod history;
mod metrics;
mod raw;
pub use edge::{EdgeConfig, RawHttp};
pub use history::{RawHistory, RawHistoryPrefix};
pub use metrics::MetricsAuth;
pub use raw::{OnFailure, RawApp, RawConfig, RawLimits, RawSink, SlowConsumer};

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
                .with_context(|| format!("sink {name}: url {:?}", redact_url(&url)))?;
            if !is_http_url(&parsed) {
                bail!(
                    "sink {name}: url {:?} must be http(s)://HOST[:PORT]/PATH",
                    redact_url(&url)
                );
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
        .with_context(|| format!("app {name}: lambda URL {:?}", redact_url(&raw.lambda)))?;
    if !is_http_url(&url) {
        bail!(
            "app {name}: lambda URL {:?} must be http(s)://HOST[:PORT]/PATH (or `direct`)",
            redact_url(&raw.lambda)
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
mod tests;

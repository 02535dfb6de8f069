//! The config file's raw shape: serde structs that refuse unknown keys.
//! Every field is optional here; `Config::from_parts` fills defaults and
//! validates. The `[http]` and `[history]` tables are in `edge.rs` and
//! `history.rs`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{MetricsAuth, RawHistory, RawHttp};
/// Keys of the config file. Every field is optional; defaults are in [`Config`](super::Config).
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

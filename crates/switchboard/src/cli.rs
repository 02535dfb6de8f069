//! Command line: subcommands and flags (PROTOCOL.md "Command line"), each flag
//! with its environment twin. Flags win over env, env over the config file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Stateful real-time gateway: holds client streams (WebSocket, SSE) and pub/sub subscriptions, and lets stateless HTTP lambdas decide what happens."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Run the gateway for local development: `serve --dev`, printing each
    /// event -> actions exchange with the lambdas as it happens.
    Dev(ServeArgs),

    /// Publish one message through a running gateway's publish API.
    Publish(PublishArgs),
    /// Lambda tools.
    Lambda {
        #[command(subcommand)]
        command: LambdaCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum LambdaCommand {
    /// Send a scripted series of events to a lambda and validate every answer
    /// against the protocol; exit 0 if all are valid, 1 with diagnostics if not.
    Check {
        /// The lambda's URL, e.g. http://127.0.0.1:9000/lambda.php
        url: String,
        /// App name to put in the requests.
        #[arg(long, default_value = "check")]
        app: String,
        /// Per-request timeout in milliseconds.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
        /// PEM CA certificates that an https:// lambda must be signed by,
        /// instead of the system's roots.
        #[arg(long, env = "SWITCHBOARD_LAMBDA_CA_FILE")]
        lambda_ca_file: Option<PathBuf>,
    },
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// TOML config file (see docs/configuration.md). Flags and env override its keys.
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on for clients, publishers and operators. Default 127.0.0.1:8080.
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    pub listen: Option<String>,
    /// An app as NAME=LAMBDA_URL (repeatable; env: comma-separated). NAME=direct has no
    /// lambda: a stream's `topic` param (comma-separated) subscribes it directly.
    /// With no app at all, the app `pubsub` runs as NAME=direct.
    #[arg(long = "app", env = "SWITCHBOARD_APPS", value_delimiter = ',')]
    pub apps: Vec<String>,
    /// Broker: `memory` (embedded, the default), or a shared one for many nodes:
    /// nats://HOST:PORT (JetStream) or redis://HOST:PORT (docs/scaling.md);
    /// tls://HOST:PORT and rediss://HOST:PORT for TLS.
    #[arg(long, env = "SWITCHBOARD_BROKER", hide_env_values = true)]
    pub broker: Option<String>,
    /// PEM CA certificates that a TLS broker (tls:// NATS, rediss:// Redis)
    /// must be signed by, instead of the system's roots.
    #[arg(long, env = "SWITCHBOARD_BROKER_CA_FILE")]
    pub broker_ca_file: Option<PathBuf>,
    /// PEM CA certificates that https:// lambdas and sinks must be signed
    /// by, instead of the system's roots.
    #[arg(long, env = "SWITCHBOARD_LAMBDA_CA_FILE")]
    pub lambda_ca_file: Option<PathBuf>,
    /// Key that publishers must send as `Authorization: Bearer KEY` to POST /v1/publish.
    #[arg(long, env = "SWITCHBOARD_PUBLISH_KEY", hide_env_values = true)]
    pub publish_key: Option<String>,
    /// Key for the admin API (GET /v1/admin/apps). Without one, admin endpoints answer 403.
    #[arg(long, env = "SWITCHBOARD_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// A file holding the publish key (white space trimmed); instead of --publish-key.
    #[arg(long, env = "SWITCHBOARD_PUBLISH_KEY_FILE")]
    pub publish_key_file: Option<PathBuf>,
    /// A file holding the admin key (white space trimmed); instead of --admin-key.
    #[arg(long, env = "SWITCHBOARD_ADMIN_KEY_FILE")]
    pub admin_key_file: Option<PathBuf>,
    /// Allow publishing without a key on a non-loopback listener.
    #[arg(long, env = "SWITCHBOARD_ALLOW_ANONYMOUS_PUBLISH")]
    pub allow_anonymous_publish: bool,
    /// Serve GET /metrics on this address (IP:PORT) instead of on --listen,
    /// which then answers it 404. Default: on --listen.
    #[arg(long, env = "SWITCHBOARD_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// `none` (default: /metrics is open to whoever reaches its listener) or
    /// `admin_key` (it needs `Authorization: Bearer <admin key>`).
    #[arg(long, env = "SWITCHBOARD_METRICS_AUTH")]
    pub metrics_auth: Option<String>,
    /// Print each lambda exchange (event -> actions) to stdout as it happens.
    #[arg(long, env = "SWITCHBOARD_DEV")]
    pub dev: bool,
    /// Log level filter, e.g. `info`, `switchboard=debug`. Env: SWITCHBOARD_LOG.

    #[arg(long, env = "SWITCHBOARD_LOG")]
    pub log: Option<String>,
    /// Topics one stream may follow (limits.max_topics_per_stream). Default 128.
    #[arg(long, env = "SWITCHBOARD_MAX_TOPICS_PER_STREAM")]
    pub max_topics_per_stream: Option<usize>,
    /// Bytes of `send` data a connection may have waiting for lambdas before
    /// its socket is no longer read (limits.max_queued_send_bytes). Default 1048576.
    #[arg(long, env = "SWITCHBOARD_MAX_QUEUED_SEND_BYTES")]
    pub max_queued_send_bytes: Option<usize>,
    /// Opens per second per connection (limits.max_opens_per_second). Default 50.
    #[arg(long, env = "SWITCHBOARD_MAX_OPENS_PER_SECOND")]
    pub max_opens_per_second: Option<u32>,
    /// Events of a connection waiting for or in lambda calls before its socket
    /// is no longer read (limits.max_lambda_jobs_per_connection). Default 256.
    #[arg(long, env = "SWITCHBOARD_MAX_LAMBDA_JOBS_PER_CONNECTION")]
    pub max_lambda_jobs_per_connection: Option<usize>,
    /// Test only, hidden from --help: also serve `GET /v1/_echo`, a WebSocket
    /// echo through the gateway's own framing, for the conformance suite
    /// (scripts/autobahn.sh). Refused on a listener that is not loopback.
    #[arg(long, env = "SWITCHBOARD_WS_ECHO", hide = true)]
    pub ws_echo: bool,
    /// Lambda publishes one chain of messages may pass through before the
    /// next is dropped (limits.max_publish_hops). Default 8.
    #[arg(long, env = "SWITCHBOARD_MAX_PUBLISH_HOPS")]
    pub max_publish_hops: Option<u8>,
    #[command(flatten)]
    pub edge: EdgeArgs,
    #[command(flatten)]
    pub history: HistoryArgs,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The gateway's base URL (http:// or https://).
    #[arg(long, env = "SWITCHBOARD_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Publish key, sent as `Authorization: Bearer KEY`.
    #[arg(long, env = "SWITCHBOARD_PUBLISH_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Optional dedup key: a repeat within the dedup window is not published again.
    #[arg(long)]
    pub dedup_key: Option<String>,
    /// PEM CA certificates that an https:// gateway must be signed by,
    /// instead of the system's roots.
    #[arg(long, env = "SWITCHBOARD_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Topic, e.g. `news` or `live_video_comment/1234`.
    pub topic: String,
    /// The message's data, as JSON, e.g. '{"hello":1}'.
    pub json: String,
}

/// The HTTP edge's flags (file table `[http]`, docs/security.md).
#[derive(Debug, Args, Default)]
pub struct EdgeArgs {
    /// A request head must be whole within this many ms (from the accept, or
    /// from its first byte on a keep-alive connection). Default 10000.
    #[arg(long, env = "SWITCHBOARD_HEADER_TIMEOUT_MS")]
    pub header_timeout_ms: Option<u64>,
    /// A keep-alive connection idle this many ms is closed. Default 75000.
    #[arg(long, env = "SWITCHBOARD_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// A request body must be whole within this many ms. Default 10000.
    #[arg(long, env = "SWITCHBOARD_BODY_TIMEOUT_MS")]
    pub body_timeout_ms: Option<u64>,
    /// Largest request head in bytes; a bigger one gets 431. Default 16384.
    #[arg(long, env = "SWITCHBOARD_MAX_HEAD_BYTES")]
    pub max_head_bytes: Option<usize>,
    /// Open TCP connections at most. Default: the descriptor limit less headroom.
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Open connections from one client address at most. Default: no cap.
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Every connection starts with a PROXY protocol header (v1 or v2).
    #[arg(long, env = "SWITCHBOARD_PROXY_PROTOCOL")]
    pub proxy_protocol: bool,
    /// Peers whose X-Forwarded-For is believed (CIDR, comma-separated).
    #[arg(long, env = "SWITCHBOARD_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
    /// Origins besides the request's own that browsers may come from
    /// (`https://app.example.com`, `https://*.example.com`; comma-separated).
    #[arg(long, env = "SWITCHBOARD_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// PEM certificate chain (leaf first): the listener serves https:// and
    /// wss:// itself. Needs --tls-key.
    #[arg(long, env = "SWITCHBOARD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "SWITCHBOARD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
}

/// History bounds (file table `[history]`, docs/security.md "Node-wide memory bounds").
#[derive(Debug, Args, Default)]
pub struct HistoryArgs {
    /// Messages each topic keeps in history (history.max_messages). Default 1000.
    #[arg(long, env = "SWITCHBOARD_HISTORY_MAX_MESSAGES")]
    pub history_max_messages: Option<usize>,
    /// Bytes of data each topic keeps in history (history.max_bytes). Default 1048576.
    #[arg(long, env = "SWITCHBOARD_HISTORY_MAX_BYTES")]
    pub history_max_bytes: Option<usize>,
    /// Oldest message each topic keeps, ms (history.max_age_ms). Default 600000.
    #[arg(long, env = "SWITCHBOARD_HISTORY_MAX_AGE_MS")]
    pub history_max_age_ms: Option<u64>,
    /// Embedded broker: bytes of history over all topics; past it the node's
    /// oldest messages go first (history.max_total_bytes). Default 268435456.
    #[arg(long, env = "SWITCHBOARD_HISTORY_MAX_TOTAL_BYTES")]
    pub history_max_total_bytes: Option<usize>,
    /// NATS: `max_bytes` of the JetStream history stream it creates
    /// (history.nats_max_bytes). Default 1073741824.
    #[arg(long, env = "SWITCHBOARD_HISTORY_NATS_MAX_BYTES")]
    pub history_nats_max_bytes: Option<u64>,
}

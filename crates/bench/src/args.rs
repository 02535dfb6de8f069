//! The command line: flags, their checks, and what they make of a run.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::common::ReportOpts;
use crate::server::{parse_pids, Pids, Server};
use crate::sub::{SubCfg, Transport};
use crate::target::Target;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "switchboard-bench",
    version,
    about = "Load generator for Switchboard: subscribers over WebSocket or SSE, a paced publisher, latency (HDR), deliveries/s, losses, and the server's RSS and CPU per connection and per delivery."
)]
pub(crate) struct Args {
    /// The gateway's base URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub(crate) url: String,
    /// What serves --url: subscribe paths, frame classification and the
    /// publish format follow it (bench/README.md).
    #[arg(long, value_enum, default_value_t = Server::Switchboard)]
    pub(crate) server: Server,
    /// Base URL publish requests go to, if not --url (Pushpin: the
    /// handler's push_in_http_port).
    #[arg(long)]
    pub(crate) publish_url: Option<String>,
    /// Subscriber transport.
    #[arg(long, value_enum, default_value_t = Transport::Ws)]
    pub(crate) transport: Transport,
    /// Number of subscribers.
    #[arg(long, default_value_t = 100)]
    pub(crate) subscribers: usize,
    /// Topics `bench/0` .. `bench/K-1`; subscriber i follows bench/(i mod K),
    /// message n goes to bench/(n mod K).
    #[arg(long, default_value_t = 1)]
    pub(crate) topics: usize,
    /// Messages per second published, over all topics.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) rate: f64,
    /// Seconds measured (idle: seconds connections are held).
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// Seconds of publishing before the measurement window.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) warmup: f64,
    /// Bytes of padding in each message's data.
    #[arg(long, default_value_t = 0)]
    pub(crate) payload: usize,
    /// The app subscribers open (a direct app: `topic` param subscribes).
    #[arg(long, default_value = "pubsub")]
    pub(crate) app: String,
    /// Connect, measure RSS, hold for --duration; no publishing.
    #[arg(long)]
    pub(crate) idle: bool,
    /// The server's pid, for RSS (/proc/PID/status) and CPU (/proc/PID/stat);
    /// several comma-separated pids (nginx master and workers, Pushpin's
    /// processes) are summed.
    #[arg(long, value_parser = parse_pids)]
    pub(crate) server_pid: Option<Pids>,
    /// Pids of a helper outside the server (Pushpin's GRIP origin): its CPU
    /// over the window is reported apart, not in the server's.
    #[arg(long, value_parser = parse_pids)]
    pub(crate) origin_pid: Option<Pids>,
    /// Publish key (Authorization: Bearer KEY).
    #[arg(long, env = "SWITCHBOARD_PUBLISH_KEY")]
    pub(crate) publish_key: Option<String>,
    #[command(flatten)]
    pub(crate) report: ReportOpts,
    /// Subscriber threads per process.
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// Most subscribers one process holds; more spawn worker processes.
    #[arg(long, default_value_t = 15_000)]
    pub(crate) per_process: usize,
    /// Worker processes to use (0: only when --subscribers exceeds --per-process).
    #[arg(long, default_value_t = 0)]
    pub(crate) procs: usize,
    /// Seconds allowed for all subscribers to connect.
    #[arg(long, default_value_t = 60.0)]
    pub(crate) connect_timeout: f64,
    /// Connection attempts in flight per subscriber thread.
    #[arg(long, env = "BENCH_CONNECT_CONCURRENCY", default_value_t = 128)]
    pub(crate) connect_concurrency: usize,
    /// Seconds after the window for in-flight deliveries to arrive.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) drain: f64,
    /// Seconds between the last connection and the idle RSS sample.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) settle: f64,
    /// Most messages in one publish request.
    #[arg(long, default_value_t = 1000)]
    pub(crate) max_batch: usize,
    /// First source address 127.0.0.X for subscribers.
    #[arg(long, default_value_t = 2)]
    pub(crate) src_from: u8,
    /// Last source address 127.0.0.X for subscribers.
    #[arg(long, default_value_t = 250)]
    pub(crate) src_to: u8,
    #[arg(long, hide = true)]
    pub(crate) worker: bool,
    #[arg(long, hide = true, default_value_t = 0)]
    pub(crate) first_sub: usize,
    #[arg(long, hide = true, default_value_t = 0)]
    pub(crate) count: usize,
    #[arg(long, hide = true, default_value_t = 0)]
    pub(crate) deadline_ns: u64,
}

impl Args {
    pub(crate) fn validate(&self) -> Result<Target> {
        let t = Target::parse(&self.url)?;
        if let Some(u) = &self.publish_url {
            Target::parse(u).context("--publish-url")?;
        }
        if self.server == Server::Pushpin && self.publish_url.is_none() && !self.idle {
            bail!("--server pushpin publishes to the handler's port: give --publish-url");
        }
        if self.topics == 0 {
            bail!("--topics must be at least 1");
        }
        crate::common::check_seconds(
            self.duration,
            &[
                ("--warmup", self.warmup),
                ("--drain", self.drain),
                ("--settle", self.settle),
                ("--connect-timeout", self.connect_timeout),
            ],
        )?;
        let rate_ok = self.rate > 0.0 && self.rate <= 1e7;
        if !self.idle && !rate_ok {
            bail!("--rate must be positive (or use --idle)");
        }
        crate::common::check_sources(self.src_from, self.src_to)?;
        if self.per_process == 0 {
            bail!("--per-process must be at least 1");
        }
        Ok(t)
    }

    pub(crate) fn sub_cfg(&self, target: Target) -> SubCfg {
        SubCfg {
            target,
            server: self.server,
            transport: self.transport,
            app: self.app.clone(),
            topics: self.topics,
            src_from: self.src_from,
            src_to: self.src_to,
            threads: self.threads.max(1),
            connect_timeout: Duration::from_secs_f64(self.connect_timeout),
            concurrency: self.connect_concurrency.max(1),
        }
    }

    /// Seconds the whole run may take before the watchdog ends it.
    pub(crate) fn hard_limit(&self) -> f64 {
        let run = if self.idle {
            self.duration
        } else {
            0.1 + self.warmup + self.duration + self.drain
        };
        self.connect_timeout + self.settle + run + 30.0
    }
}

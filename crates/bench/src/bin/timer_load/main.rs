//! timer_load: many streams with a timer each, multiplexed over few
//! WebSocket connections (PROTOCOL.md: many `open` frames with distinct
//! `stream` names on one connection), to measure what timers cost the
//! gateway. C connections (from source addresses 127.0.0.2-250) carry S
//! streams each on app `bench` with params `{"timer_ms":T,"topic":"idle/<i>"}`;
//! with bench's mini_lambda each open arms a timer `t` every T ms and each
//! tick is answered with no action. Once every stream is `opened`, it holds
//! them (reading and discarding frames, answering pings) and measures over
//! a window: timers fired per second (the gateway's
//! `switchboard_app_timers_fired`, and the lambda's own `timer` count from
//! mini_lambda's /stats), the gateway's CPU per timer fired, its RSS per
//! stream, and the lambda's CPU. A JSON report and a table. Loopback only;
//! every phase has a deadline and a watchdog ends an overlong run.

#[allow(dead_code)]
#[path = "../../common.rs"]
mod common;
#[allow(dead_code)]
#[path = "../../procfs.rs"]
mod procfs;
#[allow(dead_code)]
#[path = "../../target.rs"]
mod target;
#[allow(dead_code)]
#[path = "../../wire.rs"]
mod wire;

mod conn;
mod report;

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use clap::Parser;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;

use common::{round, ReportOpts};
use procfs::unix_ns;
use target::Target;
use wire::Frame;

use conn::*;
use report::*;

/// Largest server frame accepted.
const MAX_FRAME: usize = 16 << 20;
/// Largest HTTP response read from /metrics or /stats.
const MAX_RESPONSE: usize = 16 << 20;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "timer_load",
    version,
    about = "Many multiplexed WebSocket streams with a timer each: timers fired/s, gateway CPU per timer, RSS per stream, lambda CPU (JSON report)."
)]
struct Args {
    /// The gateway's base URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// WebSocket connections.
    #[arg(long, default_value_t = 500)]
    connections: usize,
    /// Streams per connection (the gateway's limits.max_streams_per_connection must allow it).
    #[arg(long, default_value_t = 200)]
    streams: usize,
    /// The app every stream opens (a lambda app: bench's mini_lambda).
    #[arg(long, default_value = "bench")]
    app: String,
    /// `params.timer_ms` of each open: the timer's interval.
    #[arg(long, default_value_t = 1000)]
    timer_ms: u64,
    /// Stream i gets `params.topic` = PREFIX + i.
    #[arg(long, default_value = "idle/")]
    topic_prefix: String,
    /// Seconds measured once every stream is open and --settle has passed.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Seconds between the last `opened` and the window (timers start firing).
    #[arg(long, default_value_t = 5.0)]
    settle: f64,
    /// Seconds allowed for every connection to open all its streams.
    #[arg(long, default_value_t = 180.0)]
    open_timeout: f64,
    /// Connections opening their streams at once.
    #[arg(long, default_value_t = 50)]
    open_concurrency: usize,
    /// `open` frames in flight (sent, not yet answered) per connection.
    #[arg(long, default_value_t = 20)]
    open_window: usize,
    /// The gateway's pid: RSS (/proc/PID/status) and CPU (/proc/PID/stat).
    #[arg(long)]
    server_pid: Option<u32>,
    /// The lambda's pid, for its CPU (else its /stats `cpu_us`).
    #[arg(long)]
    lambda_pid: Option<u32>,
    /// mini_lambda's base URL, for GET /stats (its `timer` count).
    #[arg(long)]
    lambda_url: Option<String>,
    /// First source address 127.0.0.X.
    #[arg(long, default_value_t = 2)]
    src_from: u8,
    /// Last source address 127.0.0.X.
    #[arg(long, default_value_t = 250)]
    src_to: u8,
    #[command(flatten)]
    report: ReportOpts,
}

impl Args {
    fn validate(&self) -> Result<(Target, Option<Target>)> {
        let t = Target::parse(&self.url)?;
        let l = self.lambda_url.as_deref().map(Target::parse).transpose()?;
        if self.connections == 0 || self.streams == 0 {
            bail!("--connections and --streams must be at least 1");
        }
        if self.timer_ms == 0 {
            bail!("--timer-ms must be at least 1");
        }
        common::check_seconds(
            self.duration,
            &[
                ("--settle", self.settle),
                ("--open-timeout", self.open_timeout),
            ],
        )?;
        common::check_sources(self.src_from, self.src_to)?;
        Ok((t, l))
    }

    fn source(&self, conn: usize) -> IpAddr {
        common::source_addr(self.src_from, self.src_to, conn)
    }

    fn hard_limit(&self) -> f64 {
        self.open_timeout + self.settle + self.duration + 60.0
    }
}

/// Counters shared by the connection tasks.
#[derive(Default)]
struct Counters {
    opened: AtomicU64,
    rejected: AtomicU64,
    conns_ok: AtomicU64,
    conns_failed: AtomicU64,
    /// Connections whose open phase ended (all streams answered, or failed).
    conns_done: AtomicU64,
    conns_closed: AtomicU64,
    streams_closed: AtomicU64,
    pings: AtomicU64,
    events: AtomicU64,
    other: AtomicU64,
    first_error: Mutex<Option<String>>,
    first_close: Mutex<Option<String>>,
    first_other: Mutex<Option<String>>,
    progress: Notify,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn first(slot: &Mutex<Option<String>>, text: impl FnOnce() -> String) {
    if let Ok(mut s) = slot.lock() {
        if s.is_none() {
            *s = Some(text());
        }
    }
}

fn take(slot: &Mutex<Option<String>>) -> Option<String> {
    slot.lock().ok().and_then(|s| s.clone())
}

fn cut(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned()
}

// ---------------------------------------------------------------- wire

/// A server frame's header (wire::ws_frame), refusing one over MAX_FRAME.
fn ws_frame(b: &[u8]) -> Result<Frame, String> {
    wire::ws_frame_within(b, MAX_FRAME)
        .map_err(|len| format!("a frame of {len} bytes is over the limit"))
}

/// `type` and `stream` of a server frame.
#[derive(Debug, Deserialize)]
struct ServerFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    stream: Option<Cow<'a, str>>,
}

/// The value of `switchboard_app_<name>{app="<app>"}` in Prometheus text.
fn app_metric(text: &str, name: &str, app: &str) -> Option<u64> {
    let key = format!("switchboard_app_{name}{{app=\"{app}\"}}");
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k != key {
            return None;
        }
        let v = v.trim();
        v.parse::<u64>().ok().or_else(|| {
            v.parse::<f64>()
                .ok()
                .filter(|f| *f >= 0.0)
                .map(|f| f as u64)
        })
    })
}

/// The body of a whole `Connection: close` HTTP/1.1 response: by
/// `Content-Length`, chunked, or to the end.
fn response_body(raw: &[u8]) -> Result<Vec<u8>, String> {
    let head = wire::whole_response_head(raw).ok_or("incomplete response head")??;
    if head.status != 200 {
        return Err(format!("HTTP {}", head.status));
    }
    let body = &raw[head.len..];
    if head.chunked {
        return dechunk(body);
    }
    match head.content_length {
        Some(n) if n <= body.len() => Ok(body[..n].to_vec()),
        Some(n) => Err(format!("body cut short ({} of {n} bytes)", body.len())),
        None if head.bad_content_length => Err("bad content-length".into()),
        None => Ok(body.to_vec()),
    }
}

/// Decodes a whole chunked body (trailers ignored).
fn dechunk(raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut d = wire::Dechunk::default();
    let mut out = Vec::new();
    d.feed(raw, &mut out).ok_or("malformed chunked body")?;
    if !d.last_chunk() {
        return Err("chunked body cut short".into());
    }
    Ok(out)
}

/// GET `path` from a loopback HTTP server; the body.
async fn http_get(t: &Target, path: &str) -> Result<Vec<u8>> {
    let go = async {
        let mut tcp = TcpStream::connect(t.addr).await?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            t.host
        );
        tcp.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = tcp.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&chunk[..n]);
            if raw.len() > MAX_RESPONSE {
                bail!("response over {MAX_RESPONSE} bytes");
            }
        }
        response_body(&raw).map_err(|e| anyhow!("GET {path}: {e}"))
    };
    tokio::time::timeout(Duration::from_secs(5), go)
        .await
        .map_err(|_| anyhow!("GET {path}: timed out"))?
}

// ---------------------------------------------------------------- connections

async fn run(args: Args) -> Result<Value> {
    let (target, lambda) = args.validate()?;
    common::watchdog(
        unix_ns() + (args.hard_limit() * 1e9) as u64,
        "timer_load",
        "the run",
        || {},
    );
    let nofile = procfs::raise_nofile();
    if nofile != 0 && args.connections as u64 + 64 > nofile {
        bail!(
            "{} connections need ~{} open files but the limit is {nofile}",
            args.connections,
            args.connections + 64
        );
    }
    if let Some(pid) = args.server_pid {
        if procfs::rss_kib(pid).is_none() {
            bail!("--server-pid {pid}: no such process (or /proc unreadable)");
        }
    }
    let rss = |pid: Option<u32>| pid.and_then(procfs::rss_kib);
    let rss_before = rss(args.server_pid);
    let lambda_rss_before = rss(args.lambda_pid);
    let before = sample(&args, &target, lambda.as_ref()).await;
    let wanted = (args.connections * args.streams) as u64;

    // Open phase.
    let args = Arc::new(args);
    let sh = Arc::new(Counters::default());
    let gate = Arc::new(Semaphore::new(args.open_concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let t_open = Instant::now();
    let open_deadline = t_open + Duration::from_secs_f64(args.open_timeout);
    for idx in 0..args.connections {
        tokio::spawn(connection(
            args.clone(),
            target.clone(),
            idx,
            sh.clone(),
            gate.clone(),
            open_deadline,
            stop_rx.clone(),
        ));
    }
    let give_up = open_deadline + Duration::from_secs(5);
    let mut last_note = Instant::now();
    while get(&sh.conns_done) < args.connections as u64 && Instant::now() < give_up {
        let _ = tokio::time::timeout(Duration::from_millis(500), sh.progress.notified()).await;
        if last_note.elapsed() >= Duration::from_secs(5) {
            last_note = Instant::now();
            eprintln!(
                "timer_load: {} of {wanted} streams opened ({} connections done) after {:.0} s",
                get(&sh.opened),
                get(&sh.conns_done),
                t_open.elapsed().as_secs_f64()
            );
        }
    }
    let open_secs = t_open.elapsed().as_secs_f64();
    let opened = get(&sh.opened);
    let after_open = sample(&args, &target, lambda.as_ref()).await;
    eprintln!(
        "timer_load: {opened} of {wanted} streams opened on {} connections in {open_secs:.1} s{}",
        get(&sh.conns_ok),
        take(&sh.first_error)
            .map(|e| format!(" (first error: {e})"))
            .unwrap_or_default()
    );
    if opened == 0 {
        stop_tx.send_replace(true);
        bail!("no stream opened; nothing to measure");
    }

    // Settle, then the window.
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let rss_open = rss(args.server_pid);
    let lambda_rss_open = rss(args.lambda_pid);
    let w0 = sample(&args, &target, lambda.as_ref()).await;
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    let w1 = sample(&args, &target, lambda.as_ref()).await;
    let rss_end = rss(args.server_pid);
    let lambda_rss_end = rss(args.lambda_pid);
    let alive = get(&sh.conns_ok).saturating_sub(get(&sh.conns_closed));
    stop_tx.send_replace(true);

    let secs = match (w0.at, w1.at) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => args.duration,
    };
    let per_sec = |n: Option<u64>| n.map(|n| round(n as f64 / secs, 1));
    let pct = |us: Option<u64>| us.map(|us| round(us as f64 / (secs * 1e4), 1));
    let fired = metric_delta(&w0, &w1, "timers_fired");
    let per_timer = |us: Option<u64>| match (us, fired) {
        (Some(us), Some(f)) if f > 0 => Some(round(us as f64 / f as f64, 3)),
        _ => None,
    };
    let expected_per_sec = opened as f64 * 1000.0 / args.timer_ms as f64;
    let fired_per_sec = per_sec(fired);
    let server_cpu = delta(w0.server_cpu_us, w1.server_cpu_us);
    let lambda_cpu = delta(w0.lambda_cpu_us, w1.lambda_cpu_us);
    let self_cpu = w1.self_cpu_us.saturating_sub(w0.self_cpu_us);
    let lambda_timers = delta(w0.lambda_timers, w1.lambda_timers);
    let events = metric_delta(&w0, &w1, "lambda_events");
    let calls = metric_delta(&w0, &w1, "lambda_calls");
    let per_stream = |b: Option<u64>, a: Option<u64>| match (b, a) {
        (Some(b), Some(a)) => Some(round((a as f64 - b as f64) / opened as f64, 3)),
        _ => None,
    };
    let streams_closed = get(&sh.streams_closed);
    let ok = opened == wanted
        && fired_per_sec.is_some_and(|f| f >= 0.95 * expected_per_sec)
        && streams_closed == 0
        && get(&sh.conns_closed) == 0;
    let open_events = metric_delta(&before, &after_open, "lambda_events");
    let report = json!({
        "tool": "timer_load",
        "version": env!("CARGO_PKG_VERSION"),
        "label": args.report.label,
        "started_unix_ms": unix_ns() / 1_000_000,
        "url": args.url,
        "app": args.app,
        "connections": args.connections,
        "streams_per_connection": args.streams,
        "streams_wanted": wanted,
        "timer_ms": args.timer_ms,
        "loadavg_end": procfs::loadavg(),
        "open": {
            "streams_opened": opened,
            "rejected": get(&sh.rejected),
            "connections_ok": get(&sh.conns_ok),
            "connections_failed": get(&sh.conns_failed),
            "first_error": take(&sh.first_error),
            "seconds": round(open_secs, 2),
            "opens_per_sec": round(opened as f64 / open_secs.max(1e-9), 1),
            "lambda_events": open_events,
        },
        "window": {
            "seconds": round(secs, 2),
            "timers_fired": fired,
            "timers_fired_per_sec": fired_per_sec,
            "expected_per_sec": round(expected_per_sec, 1),
            "timers_skipped": metric_delta(&w0, &w1, "timers_skipped"),
            "lambda_events": events,
            "lambda_calls": calls,
            "lambda_events_per_call": match (events, calls) {
                (Some(e), Some(c)) if c > 0 => Some(round(e as f64 / c as f64, 1)),
                _ => None,
            },
            "lambda_failures": metric_delta(&w0, &w1, "lambda_failures"),
            "events_out": metric_delta(&w0, &w1, "events_out"),
            "lambda_seen_events": delta(w0.lambda_events, w1.lambda_events),
            "lambda_timer_events": lambda_timers,
            "lambda_timer_events_per_sec": per_sec(lambda_timers),
        },
        "server": {
            "pid": args.server_pid,
            "rss_before_kib": rss_before,
            "rss_open_kib": rss_open,
            "rss_end_kib": rss_end,
            "rss_per_stream_kib": per_stream(rss_before, rss_open),
            "rss_per_stream_end_kib": per_stream(rss_before, rss_end),
            "cpu_us": server_cpu,
            "cpu_percent": pct(server_cpu),
            "cpu_us_per_timer": per_timer(server_cpu),
        },
        "lambda": {
            "pid": args.lambda_pid,
            "rss_before_kib": lambda_rss_before,
            "rss_open_kib": lambda_rss_open,
            "rss_end_kib": lambda_rss_end,
            "cpu_us": lambda_cpu,
            "cpu_percent": pct(lambda_cpu),
            "cpu_us_per_timer": per_timer(lambda_cpu),
        },
        "loadgen": {
            "cpu_us": self_cpu,
            "cpu_percent": pct(Some(self_cpu)),
            "nofile_limit": nofile,
        },
        "streams": {
            "connections_alive_at_end": alive,
            "connections_closed": get(&sh.conns_closed),
            "first_close": take(&sh.first_close),
            "streams_closed_by_server": streams_closed,
            "pings": get(&sh.pings),
            "events": get(&sh.events),
            "other_frames": get(&sh.other),
            "first_other_frame": take(&sh.first_other),
        },
        "summary": {
            "streams_opened": opened,
            "open_seconds": round(open_secs, 2),
            "timers_per_sec": fired_per_sec,
            "expected_timers_per_sec": round(expected_per_sec, 1),
            "server_cpu_percent": pct(server_cpu),
            "server_cpu_us_per_timer": per_timer(server_cpu),
            "rss_per_stream_kib": per_stream(rss_before, rss_open),
            "lambda_cpu_percent": pct(lambda_cpu),
            "lambda_cpu_us_per_timer": per_timer(lambda_cpu),
            "verdict": if ok { "ok" } else { "short" },
        },
    });
    Ok(report)
}

fn main() {
    let args = Args::parse();
    let opts = args.report.clone();
    let rt = common::runtime("timer_load");
    let report = match rt.block_on(run(args)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("timer_load: {e:#}");
            std::process::exit(2);
        }
    };
    if let Err(e) = common::emit(&opts, &report, &table(&report)) {
        eprintln!("timer_load: {e:#}");
        std::process::exit(2);
    }
    // Don't wait for connection tasks to wind down.
    std::process::exit(0);
}

#[cfg(test)]
mod tests;

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
#[path = "../common.rs"]
mod common;
#[allow(dead_code)]
#[path = "../procfs.rs"]
mod procfs;
#[allow(dead_code)]
#[path = "../target.rs"]
mod target;
#[allow(dead_code)]
#[path = "../wire.rs"]
mod wire;

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

struct Conn {
    tcp: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    mask: u32,
}

impl Conn {
    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift32: masks need not be secret here, only present.
        let mut x = self.mask;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask = x;
        x.to_be_bytes()
    }

    /// Reads more bytes, first making room for a frame of `need` bytes.
    async fn fill(&mut self, need: usize) -> Result<(), String> {
        // `ws_frame` has refused a frame over MAX_FRAME.
        wire::compact(
            &mut self.buf,
            &mut self.start,
            &mut self.end,
            need,
            usize::MAX,
        )
        .map_err(|e| e.to_string())?;
        match self.tcp.read(&mut self.buf[self.end..]).await {
            Ok(0) => Err("server closed the connection".into()),
            Ok(n) => {
                self.end += n;
                Ok(())
            }
            Err(e) => Err(format!("read: {e}")),
        }
    }
}

/// What one text frame or control frame meant.
enum Seen {
    Opened,
    Rejected(String),
    Nothing,
    Closed(String),
}

/// Handles the whole frames in the buffer; queues pongs in `reply`.
fn frames(
    c: &mut Conn,
    sh: &Counters,
    reply: &mut Vec<u8>,
    seen: &mut Vec<Seen>,
) -> Result<usize, String> {
    loop {
        match ws_frame(&c.buf[c.start..c.end])? {
            Frame::Need(n) => return Ok(n),
            Frame::Whole {
                opcode, start, len, ..
            } => {
                let (a, b) = (c.start + start, c.start + start + len);
                c.start = b;
                match opcode {
                    1 => {
                        let p = &c.buf[a..b];
                        let s = match serde_json::from_slice::<ServerFrame>(p) {
                            Ok(f) => match f.kind.as_ref() {
                                "opened" => Seen::Opened,
                                "rejected" => Seen::Rejected(cut(p)),
                                "error" if f.stream.is_some() => Seen::Rejected(cut(p)),
                                "ping" => {
                                    inc(&sh.pings);
                                    Seen::Nothing
                                }
                                "event" => {
                                    inc(&sh.events);
                                    Seen::Nothing
                                }
                                "closed" => {
                                    inc(&sh.streams_closed);
                                    first(&sh.first_close, || cut(p));
                                    Seen::Nothing
                                }
                                _ => {
                                    inc(&sh.other);
                                    first(&sh.first_other, || cut(p));
                                    Seen::Nothing
                                }
                            },
                            Err(_) => {
                                inc(&sh.other);
                                first(&sh.first_other, || cut(p));
                                Seen::Nothing
                            }
                        };
                        seen.push(s);
                    }
                    8 => {
                        let p = &c.buf[a..b];
                        let code = if p.len() >= 2 {
                            u16::from_be_bytes([p[0], p[1]])
                        } else {
                            1005
                        };
                        seen.push(Seen::Closed(format!(
                            "server closed the WebSocket with {code}"
                        )));
                        return Ok(0);
                    }
                    9 => {
                        let mask = c.next_mask();
                        wire::client_frame(10, &c.buf[a..b], mask, reply);
                    }
                    10 => {}
                    _ => {
                        inc(&sh.other);
                    }
                }
            }
        }
    }
}

/// Connects, upgrades to WebSocket on `/v1/ws` (no stream opened yet).
async fn connect(args: &Args, target: &Target, idx: usize) -> Result<Conn> {
    let sock = TcpSocket::new_v4()?;
    let src = args.source(idx);
    sock.bind(SocketAddr::new(src, 0))
        .map_err(|e| anyhow!("bind {src}: {e}"))?;
    let mut tcp = sock.connect(target.addr).await?;
    tcp.set_nodelay(true)?;
    let req = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c3dpdGNoYm9hcmQtYmVuY2g=\r\nSec-WebSocket-Version: 13\r\n\r\n",
        target.host
    );
    tcp.write_all(req.as_bytes()).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut end = 0;
    let head = loop {
        if let Some(h) = wire::whole_response_head(&buf[..end]) {
            break h.map_err(|e| anyhow!(e))?;
        }
        if end == buf.len() {
            bail!("response head larger than {} bytes", buf.len());
        }
        let n = tcp.read(&mut buf[end..]).await?;
        if n == 0 {
            bail!("closed during the handshake");
        }
        end += n;
    };
    if head.status != 101 {
        bail!("handshake answered {} (want 101)", head.status);
    }
    Ok(Conn {
        tcp,
        buf,
        start: head.len,
        end,
        mask: (0x9e37_79b9 ^ (idx as u32).wrapping_mul(0x85eb_ca6b)) | 1,
    })
}

/// Opens this connection's streams, at most `open_window` unanswered at a time.
async fn open_streams(args: &Args, c: &mut Conn, idx: usize, sh: &Counters) -> Result<()> {
    let total = args.streams;
    let (mut next, mut pending, mut answered) = (0usize, 0usize, 0usize);
    let mut out = Vec::new();
    let mut seen = Vec::new();
    while answered < total {
        while pending < args.open_window.max(1) && next < total {
            let i = idx * total + next;
            let frame = json!({
                "type": "open",
                "stream": format!("s{next}"),
                "app": args.app,
                "params": {"timer_ms": args.timer_ms, "topic": format!("{}{i}", args.topic_prefix)},
            });
            let text = serde_json::to_vec(&frame)?;
            let mask = c.next_mask();
            wire::client_frame(1, &text, mask, &mut out);
            next += 1;
            pending += 1;
        }
        if !out.is_empty() {
            c.tcp.write_all(&out).await?;
            out.clear();
        }
        let need = frames(c, sh, &mut out, &mut seen).map_err(|e| anyhow!(e))?;
        for s in seen.drain(..) {
            match s {
                Seen::Opened => {
                    inc(&sh.opened);
                    pending = pending.saturating_sub(1);
                    answered += 1;
                }
                Seen::Rejected(why) => {
                    inc(&sh.rejected);
                    first(&sh.first_error, || format!("connection {idx}: {why}"));
                    pending = pending.saturating_sub(1);
                    answered += 1;
                }
                Seen::Closed(why) => bail!(why),
                Seen::Nothing => {}
            }
        }
        if answered >= total {
            break;
        }
        if !out.is_empty() {
            // Pongs first; opens are added on the next turn.
            c.tcp.write_all(&out).await?;
            out.clear();
        }
        // Send more opens first while the window has room; else wait for answers.
        if pending >= args.open_window.max(1) || next >= total {
            c.fill(need).await.map_err(|e| anyhow!(e))?;
        }
    }
    Ok(())
}

/// Reads and discards frames (answering pings) until `stop` or the end.
async fn hold(c: &mut Conn, sh: &Counters, mut stop: watch::Receiver<bool>) -> Option<String> {
    let mut reply = Vec::new();
    let mut seen = Vec::new();
    loop {
        let need = match frames(c, sh, &mut reply, &mut seen) {
            Ok(n) => n,
            Err(e) => return Some(e),
        };
        for s in seen.drain(..) {
            if let Seen::Closed(why) = s {
                return Some(why);
            }
        }
        if !reply.is_empty() {
            if let Err(e) = c.tcp.write_all(&reply).await {
                return Some(format!("write: {e}"));
            }
            reply.clear();
        }
        tokio::select! {
            r = c.fill(need) => {
                if let Err(e) = r {
                    return Some(e);
                }
            }
            _ = stop.wait_for(|s| *s) => return None,
        }
    }
}

async fn connection(
    args: Arc<Args>,
    target: Target,
    idx: usize,
    sh: Arc<Counters>,
    gate: Arc<Semaphore>,
    open_deadline: Instant,
    stop: watch::Receiver<bool>,
) {
    let opened = {
        let _permit = gate.acquire().await;
        tokio::time::timeout_at(open_deadline, async {
            let mut c = connect(&args, &target, idx).await?;
            open_streams(&args, &mut c, idx, &sh).await?;
            Ok::<_, anyhow::Error>(c)
        })
        .await
        .unwrap_or_else(|_| Err(anyhow!("open phase timed out")))
    };
    let mut c = match opened {
        Ok(c) => {
            inc(&sh.conns_ok);
            inc(&sh.conns_done);
            sh.progress.notify_one();
            c
        }
        Err(e) => {
            inc(&sh.conns_failed);
            first(&sh.first_error, || format!("connection {idx}: {e:#}"));
            inc(&sh.conns_done);
            sh.progress.notify_one();
            return;
        }
    };
    if let Some(why) = hold(&mut c, &sh, stop).await {
        inc(&sh.conns_closed);
        first(&sh.first_close, || why);
    }
}

// ---------------------------------------------------------------- measuring

/// One sample of the gateway's and the lambda's counters.
#[derive(Debug, Default, Clone)]
struct Sample {
    at: Option<Instant>,
    metrics: Option<Vec<(&'static str, u64)>>,
    server_cpu_us: Option<u64>,
    lambda_cpu_us: Option<u64>,
    lambda_timers: Option<u64>,
    lambda_events: Option<u64>,
    self_cpu_us: u64,
}

const METRICS: [&str; 7] = [
    "timers_fired",
    "timers_skipped",
    "timers_set",
    "lambda_events",
    "lambda_calls",
    "lambda_failures",
    "events_out",
];

async fn sample(args: &Args, gw: &Target, lambda: Option<&Target>) -> Sample {
    let metrics = match http_get(gw, "/metrics").await {
        Ok(body) => {
            let text = String::from_utf8_lossy(&body);
            Some(
                METRICS
                    .iter()
                    .filter_map(|m| app_metric(&text, m, &args.app).map(|v| (*m, v)))
                    .collect(),
            )
        }
        Err(e) => {
            eprintln!("timer_load: {e:#}");
            None
        }
    };
    let stats = match lambda {
        Some(l) => match http_get(l, "/stats").await {
            Ok(b) => serde_json::from_slice::<Value>(&b).ok(),
            Err(e) => {
                eprintln!("timer_load: lambda {e:#}");
                None
            }
        },
        None => None,
    };
    let stat = |k: &str| stats.as_ref().and_then(|s| s[k].as_u64());
    Sample {
        at: Some(Instant::now()),
        metrics,
        server_cpu_us: args.server_pid.and_then(procfs::cpu_us),
        lambda_cpu_us: args
            .lambda_pid
            .and_then(procfs::cpu_us)
            .or_else(|| stat("cpu_us")),
        lambda_timers: stat("timer"),
        lambda_events: stat("events"),
        self_cpu_us: procfs::self_cpu_us(),
    }
}

fn metric_delta(a: &Sample, b: &Sample, name: &str) -> Option<u64> {
    let get = |s: &Sample| {
        s.metrics
            .as_ref()?
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    };
    Some(get(b)?.saturating_sub(get(a)?))
}

fn delta(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(b?.saturating_sub(a?))
}

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

fn table(r: &Value) -> String {
    fn v(x: &Value) -> String {
        match x {
            Value::Null => "-".into(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
    let mut s = String::new();
    let mut row = |k: &str, val: String| s.push_str(&format!("  {k:<32} {val}\n"));
    let (o, w, sv, l, st) = (
        &r["open"],
        &r["window"],
        &r["server"],
        &r["lambda"],
        &r["streams"],
    );
    row(
        "streams",
        format!(
            "{} x {} on app {}, timer every {} ms{}",
            v(&r["connections"]),
            v(&r["streams_per_connection"]),
            v(&r["app"]),
            v(&r["timer_ms"]),
            common::label_suffix(&r["label"])
        ),
    );
    row(
        "opened / rejected / wanted",
        format!(
            "{} / {} / {} in {} s ({} opens/s)",
            v(&o["streams_opened"]),
            v(&o["rejected"]),
            v(&r["streams_wanted"]),
            v(&o["seconds"]),
            v(&o["opens_per_sec"])
        ),
    );
    if !o["first_error"].is_null() {
        row("  first error", v(&o["first_error"]));
    }
    row(
        "timers fired/s (expected)",
        format!(
            "{} ({}) over {} s; {} skipped",
            v(&w["timers_fired_per_sec"]),
            v(&w["expected_per_sec"]),
            v(&w["seconds"]),
            v(&w["timers_skipped"])
        ),
    );
    row(
        "lambda timer events/s",
        format!(
            "{} ({} events per request)",
            v(&w["lambda_timer_events_per_sec"]),
            v(&w["lambda_events_per_call"])
        ),
    );
    row(
        "gateway CPU",
        format!(
            "{} % of a core, {} µs per timer",
            v(&sv["cpu_percent"]),
            v(&sv["cpu_us_per_timer"])
        ),
    );
    row(
        "gateway RSS before/open/end",
        format!(
            "{} / {} / {} KiB",
            v(&sv["rss_before_kib"]),
            v(&sv["rss_open_kib"]),
            v(&sv["rss_end_kib"])
        ),
    );
    row(
        "gateway RSS per stream",
        format!(
            "{} KiB open, {} KiB at end",
            v(&sv["rss_per_stream_kib"]),
            v(&sv["rss_per_stream_end_kib"])
        ),
    );
    row(
        "lambda CPU",
        format!(
            "{} % of a core, {} µs per timer",
            v(&l["cpu_percent"]),
            v(&l["cpu_us_per_timer"])
        ),
    );
    row(
        "loadgen CPU",
        format!("{} % of a core", v(&r["loadgen"]["cpu_percent"])),
    );
    row(
        "closed: connections / streams",
        format!(
            "{} / {}{}",
            v(&st["connections_closed"]),
            v(&st["streams_closed_by_server"]),
            common::paren_suffix(&st["first_close"])
        ),
    );
    if !st["first_other_frame"].is_null() {
        row(
            "other frames",
            format!(
                "{} (first: {})",
                v(&st["other_frames"]),
                v(&st["first_other_frame"])
            ),
        );
    }
    row("verdict", v(&r["summary"]["verdict"]));
    s
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
mod tests {
    use super::*;

    #[test]
    fn frame_headers() {
        assert_eq!(ws_frame(&[0x81]), Ok(Frame::Need(2)));
        assert_eq!(
            ws_frame(&[0x81, 3, b'a', b'b', b'c', 0x81]),
            Ok(Frame::Whole {
                fin: true,
                opcode: 1,
                start: 2,
                len: 3
            })
        );
        assert_eq!(ws_frame(&[0x81, 126, 1]), Ok(Frame::Need(4)));
        assert_eq!(ws_frame(&[0x81, 126, 1, 0]), Ok(Frame::Need(4 + 256)));
        assert_eq!(ws_frame(&[0x89, 0x82, 1, 2, 3, 4]), Ok(Frame::Need(8)));
        let mut big = vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0];
        big.resize(10 + 65536, 0);
        assert_eq!(
            ws_frame(&big),
            Ok(Frame::Whole {
                fin: true,
                opcode: 2,
                start: 10,
                len: 65536
            })
        );
        assert!(ws_frame(&[0x81, 127, 0xff, 0, 0, 0, 0, 0, 0, 0]).is_err());
        let mut out = Vec::new();
        wire::client_frame(10, b"hi", [1, 2, 3, 4], &mut out);
        assert_eq!(out, [0x8a, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
        out.clear();
        wire::client_frame(1, &[7u8; 300], [0; 4], &mut out);
        assert_eq!(&out[..4], &[0x81, 0x80 | 126, 1, 44]);
        assert_eq!(out.len(), 4 + 4 + 300);
    }

    #[test]
    fn heads_and_bodies() {
        let response_head =
            |b: &[u8]| wire::whole_response_head(b).map(|h| h.map(|h| (h.status, h.len)));
        assert!(response_head(b"HTTP/1.1 101 Switching").is_none());
        assert_eq!(
            response_head(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81"),
            Some(Ok((101, 56)))
        );
        assert!(matches!(response_head(b"garbage\r\n\r\n"), Some(Err(_))));
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(response_body(ok), Ok(b"hello".to_vec()));
        let to_end = b"HTTP/1.1 200 OK\r\n\r\nall of it";
        assert_eq!(response_body(to_end), Ok(b"all of it".to_vec()));
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\n, w\r\n0\r\n\r\n";
        assert_eq!(response_body(chunked), Ok(b"hello, w".to_vec()));
        assert_eq!(dechunk(b"0\r\n"), Ok(Vec::new()));
        assert!(dechunk(b"5\r\nhel").is_err());
        assert!(dechunk(b"5\r\nhelloXY0\r\n").is_err());
        assert!(dechunk(b"zz\r\n").is_err());
        assert!(dechunk(b"3\r\nabc\r\n").is_err(), "no last chunk");
        assert!(response_body(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(response_body(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").is_err());
        assert!(response_body(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
        assert!(
            response_body(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello")
                .is_err()
        );
        assert!(response_body(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn prometheus_lines() {
        let text = "# HELP switchboard_app_timers_fired Timer ticks sent to the lambda\n\
                    # TYPE switchboard_app_timers_fired counter\n\
                    switchboard_app_timers_fired{app=\"pubsub\"} 3\n\
                    switchboard_app_timers_fired{app=\"bench\"} 123456\n\
                    switchboard_app_timers_fired_extra{app=\"bench\"} 9\n\
                    switchboard_app_lambda_events{app=\"bench\"} 1.5e3\n\
                    switchboard_app_streams{app=\"bench\"} -2\n";
        assert_eq!(app_metric(text, "timers_fired", "bench"), Some(123_456));
        assert_eq!(app_metric(text, "timers_fired", "pubsub"), Some(3));
        assert_eq!(app_metric(text, "lambda_events", "bench"), Some(1500));
        assert_eq!(app_metric(text, "streams", "bench"), None);
        assert_eq!(app_metric(text, "timers_fired", "other"), None);
        assert_eq!(app_metric(text, "timers_skipped", "bench"), None);
    }

    #[test]
    fn server_frames() {
        let f: ServerFrame = serde_json::from_slice(br#"{"type":"opened","stream":"s7"}"#).unwrap();
        assert_eq!(
            (f.kind.as_ref(), f.stream.as_deref()),
            ("opened", Some("s7"))
        );
        let f: ServerFrame =
            serde_json::from_slice(br#"{"type":"ping","cursors":{"s1":"x"}}"#).unwrap();
        assert_eq!((f.kind.as_ref(), f.stream), ("ping", None));
        let f: ServerFrame = serde_json::from_slice(
            br#"{"type":"error","stream":null,"code":"bad_frame","message":"m"}"#,
        )
        .unwrap();
        assert_eq!(f.stream, None);
        assert!(serde_json::from_slice::<ServerFrame>(br#"{"stream":"s"}"#).is_err());
        assert!(serde_json::from_slice::<ServerFrame>(b"not json").is_err());
    }

    #[test]
    fn frames_are_handled_and_pings_answered() {
        // Build a connection-less buffer check through `frames` by hand.
        let sh = Counters::default();
        let mut buf = Vec::new();
        for p in [
            &br#"{"type":"opened","stream":"s0"}"#[..],
            br#"{"type":"rejected","stream":"s1","code":403,"reason":"no"}"#,
            br#"{"type":"ping","cursors":{}}"#,
            br#"{"type":"closed","stream":"s0","code":4000,"reason":"x"}"#,
            b"nonsense",
        ] {
            buf.push(0x81);
            buf.push(p.len() as u8);
            buf.extend_from_slice(p);
        }
        buf.extend_from_slice(&[0x89, 2, b'h', b'i']);
        buf.extend_from_slice(&[0x81, 10, b'{']);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let tcp = TcpStream::connect(addr).await.unwrap();
            let end = buf.len();
            let mut c = Conn {
                tcp,
                buf,
                start: 0,
                end,
                mask: 1,
            };
            let mut reply = Vec::new();
            let mut seen = Vec::new();
            let need = frames(&mut c, &sh, &mut reply, &mut seen).unwrap();
            assert_eq!(need, 12, "the cut-off frame needs 2 + 10 bytes");
            assert_eq!(c.start, c.end - 3);
            assert!(matches!(seen[0], Seen::Opened));
            assert!(matches!(seen[1], Seen::Rejected(_)));
            assert_eq!(seen.len(), 5);
            assert_eq!(get(&sh.pings), 1);
            assert_eq!(get(&sh.streams_closed), 1);
            assert_eq!(get(&sh.other), 1);
            assert_eq!(reply.len(), 2 + 4 + 2);
            assert_eq!(&reply[..2], &[0x8a, 0x82]);
            let m = &reply[2..6];
            assert_eq!([reply[6] ^ m[0], reply[7] ^ m[1]], *b"hi");
        });
    }
}

//! switchboard-bench: a load generator for Switchboard (and any gateway that
//! speaks its wire contract). N subscribers over WebSocket or SSE, spread
//! over loopback source addresses and, past what one process may open, over
//! worker processes; a publisher at a given rate; publish-to-deliver latency,
//! deliveries per second, lost messages, and the server's RSS and CPU per
//! connection and per delivery, as a table and as JSON. Every phase has a
//! deadline and a watchdog ends the run if one is missed.

mod common;
mod procfs;
mod publish;
mod server;
mod sub;
mod target;
mod wire;

use std::io::{BufRead, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use common::{round, ReportOpts};
use procfs::unix_ns;
use server::{parse_pids, Pids, Server};
use sub::{Connected, GroupMsg, GroupResult, Phase, SubCfg, Transport, Window};
use target::Target;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "switchboard-bench",
    version,
    about = "Load generator for Switchboard: subscribers over WebSocket or SSE, a paced publisher, latency (HDR), deliveries/s, losses, and the server's RSS and CPU per connection and per delivery."
)]
struct Args {
    /// The gateway's base URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// What serves --url: subscribe paths, frame classification and the
    /// publish format follow it (bench/README.md).
    #[arg(long, value_enum, default_value_t = Server::Switchboard)]
    server: Server,
    /// Base URL publish requests go to, if not --url (Pushpin: the
    /// handler's push_in_http_port).
    #[arg(long)]
    publish_url: Option<String>,
    /// Subscriber transport.
    #[arg(long, value_enum, default_value_t = Transport::Ws)]
    transport: Transport,
    /// Number of subscribers.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Topics `bench/0` .. `bench/K-1`; subscriber i follows bench/(i mod K),
    /// message n goes to bench/(n mod K).
    #[arg(long, default_value_t = 1)]
    topics: usize,
    /// Messages per second published, over all topics.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Seconds measured (idle: seconds connections are held).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of publishing before the measurement window.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Bytes of padding in each message's data.
    #[arg(long, default_value_t = 0)]
    payload: usize,
    /// The app subscribers open (a direct app: `topic` param subscribes).
    #[arg(long, default_value = "pubsub")]
    app: String,
    /// Connect, measure RSS, hold for --duration; no publishing.
    #[arg(long)]
    idle: bool,
    /// The server's pid, for RSS (/proc/PID/status) and CPU (/proc/PID/stat);
    /// several comma-separated pids (nginx master and workers, Pushpin's
    /// processes) are summed.
    #[arg(long, value_parser = parse_pids)]
    server_pid: Option<Pids>,
    /// Pids of a helper outside the server (Pushpin's GRIP origin): its CPU
    /// over the window is reported apart, not in the server's.
    #[arg(long, value_parser = parse_pids)]
    origin_pid: Option<Pids>,
    /// Publish key (Authorization: Bearer KEY).
    #[arg(long, env = "SWITCHBOARD_PUBLISH_KEY")]
    publish_key: Option<String>,
    #[command(flatten)]
    report: ReportOpts,
    /// Subscriber threads per process.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Most subscribers one process holds; more spawn worker processes.
    #[arg(long, default_value_t = 15_000)]
    per_process: usize,
    /// Worker processes to use (0: only when --subscribers exceeds --per-process).
    #[arg(long, default_value_t = 0)]
    procs: usize,
    /// Seconds allowed for all subscribers to connect.
    #[arg(long, default_value_t = 60.0)]
    connect_timeout: f64,
    /// Connection attempts in flight per subscriber thread.
    #[arg(long, env = "BENCH_CONNECT_CONCURRENCY", default_value_t = 128)]
    connect_concurrency: usize,
    /// Seconds after the window for in-flight deliveries to arrive.
    #[arg(long, default_value_t = 2.0)]
    drain: f64,
    /// Seconds between the last connection and the idle RSS sample.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Most messages in one publish request.
    #[arg(long, default_value_t = 1000)]
    max_batch: usize,
    /// First source address 127.0.0.X for subscribers.
    #[arg(long, default_value_t = 2)]
    src_from: u8,
    /// Last source address 127.0.0.X for subscribers.
    #[arg(long, default_value_t = 250)]
    src_to: u8,
    #[arg(long, hide = true)]
    worker: bool,
    #[arg(long, hide = true, default_value_t = 0)]
    first_sub: usize,
    #[arg(long, hide = true, default_value_t = 0)]
    count: usize,
    #[arg(long, hide = true, default_value_t = 0)]
    deadline_ns: u64,
}

impl Args {
    fn validate(&self) -> Result<Target> {
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
        common::check_seconds(
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
        common::check_sources(self.src_from, self.src_to)?;
        if self.per_process == 0 {
            bail!("--per-process must be at least 1");
        }
        Ok(t)
    }

    fn sub_cfg(&self, target: Target) -> SubCfg {
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
    fn hard_limit(&self) -> f64 {
        let run = if self.idle {
            self.duration
        } else {
            0.1 + self.warmup + self.duration + self.drain
        };
        self.connect_timeout + self.settle + run + 30.0
    }
}

/// Worker pids, killed by the watchdog.
static WORKERS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn watchdog(deadline_ns: u64, what: &'static str) {
    common::watchdog(deadline_ns, "switchboard-bench", what, kill_workers);
}

fn kill_workers() {
    if let Ok(pids) = WORKERS.lock() {
        for &p in pids.iter() {
            // SAFETY: signalling a child process we spawned.
            unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
        }
    }
}

fn main() {
    let args = Args::parse();
    let rt = common::runtime("switchboard-bench");
    let res = if args.worker {
        rt.block_on(worker_main(args))
    } else {
        rt.block_on(run(args))
    };
    if let Err(e) = res {
        eprintln!("switchboard-bench: {e:#}");
        std::process::exit(2);
    }
    // Don't wait for connection tasks or relays to wind down.
    std::process::exit(0);
}

fn sleep_until_ns(ns: u64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_nanos(ns.saturating_sub(unix_ns())))
}

async fn run(args: Args) -> Result<()> {
    let target = args.validate()?;
    let started = unix_ns();
    let deadline_ns = started + (args.hard_limit() * 1e9) as u64;
    watchdog(deadline_ns, "the run");
    let nofile = procfs::raise_nofile();
    let load_start = procfs::loadavg();
    for pids in [&args.server_pid, &args.origin_pid].into_iter().flatten() {
        for &pid in &pids.0 {
            if procfs::rss_kib(pid).is_none() {
                bail!("pid {pid}: no such process (or /proc unreadable)");
            }
        }
    }
    let server_pids: Option<&[u32]> = args.server_pid.as_ref().map(|p| &p.0[..]);
    let origin_pids: Option<&[u32]> = args.origin_pid.as_ref().map(|p| &p.0[..]);
    let server_rss = |pids: Option<&[u32]>| pids.and_then(procfs::rss_kib_sum);
    let rss_before = server_rss(server_pids);
    let n = args.subscribers;
    let procs = if args.procs > 0 {
        args.procs.min(n.max(1))
    } else if n > args.per_process {
        n.div_ceil(args.per_process)
    } else {
        0
    };
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let (tx, mut rx) = mpsc::unbounded_channel::<GroupMsg>();
    let cfg = Arc::new(args.sub_cfg(target.clone()));
    let expected = if n == 0 {
        0
    } else if procs == 0 {
        let want = n as u64 + 64;
        if nofile != 0 && want > nofile {
            bail!("{n} subscribers need ~{want} open files but the limit is {nofile}: raise `ulimit -n` or lower --per-process");
        }
        sub::start(cfg.clone(), 0, n, phase_rx.clone(), tx.clone())?
    } else {
        for w in 0..procs {
            let first = w * n / procs;
            let count = (w + 1) * n / procs - first;
            spawn_worker(w, first, count, deadline_ns, phase_rx.clone(), tx.clone())?;
        }
        procs
    };
    drop(tx);

    // Connect phase.
    let t_connect = Instant::now();
    let mut connected = Connected::default();
    let connect_give_up = t_connect + cfg.connect_timeout + Duration::from_secs(15);
    let mut reported = 0;
    let mut early: Vec<GroupResult> = Vec::new();
    while reported < expected {
        match tokio::time::timeout_at(connect_give_up, rx.recv()).await {
            Ok(Some(GroupMsg::Connected(c))) => {
                connected.merge(c);
                reported += 1;
            }
            Ok(Some(GroupMsg::Result(r))) => early.push(r),
            Ok(None) | Err(_) => break,
        }
    }
    let connect_secs = t_connect.elapsed().as_secs_f64();
    let unreported = (n as u64).saturating_sub(connected.ok + connected.failed);
    if unreported > 0 {
        connected.failed += unreported;
        connected
            .first_error
            .get_or_insert_with(|| "a subscriber group never reported".into());
    }
    eprintln!(
        "switchboard-bench: {} of {n} {} subscribers connected in {connect_secs:.1} s{}",
        connected.ok,
        match args.transport {
            Transport::Ws => "WebSocket",
            Transport::Sse => "SSE",
        },
        connected
            .first_error
            .as_deref()
            .map(|e| format!(" (first error: {e})"))
            .unwrap_or_default()
    );
    if n > 0 && connected.ok == 0 {
        phase_tx.send_replace(Phase::Stop);
        bail!("no subscriber connected; nothing to measure");
    }
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let rss_idle = server_rss(server_pids);

    // Run phase.
    let now = unix_ns();
    let window = if args.idle {
        let end = now + (args.duration * 1e9) as u64;
        Window {
            start_ns: now,
            end_ns: end,
            stop_ns: end,
        }
    } else {
        let pub_start = now + 100_000_000;
        let start = pub_start + (args.warmup * 1e9) as u64;
        let end = start + (args.duration * 1e9) as u64;
        Window {
            start_ns: start,
            end_ns: end,
            stop_ns: end + (args.drain * 1e9) as u64,
        }
    };
    phase_tx.send_replace(Phase::Run(window));
    let publisher = if args.idle {
        None
    } else {
        let pub_target = match &args.publish_url {
            Some(u) => Target::parse(u)?,
            None => target.clone(),
        };
        let pcfg = publish::PubCfg {
            server: args.server,
            target: pub_target,
            key: args.publish_key.clone(),
            topics: args.topics,
            rate: args.rate,
            payload: args.payload,
            max_batch: args.max_batch.clamp(1, 1000),
        };
        let start =
            Instant::now() + Duration::from_nanos((now + 100_000_000).saturating_sub(unix_ns()));
        Some(tokio::spawn(publish::run(pcfg, start, window)))
    };
    sleep_until_ns(window.start_ns).await;
    let cpu0 = server_pids.and_then(procfs::cpu_us_sum);
    let origin0 = origin_pids.and_then(procfs::cpu_us_sum);
    let self0 = procfs::self_cpu_us();
    sleep_until_ns(window.end_ns).await;
    let cpu1 = server_pids.and_then(procfs::cpu_us_sum);
    let origin1 = origin_pids.and_then(procfs::cpu_us_sum);
    let self1 = procfs::self_cpu_us();
    let rss_end = server_rss(server_pids);
    let load_end = procfs::loadavg();
    let pubr = match publisher {
        Some(p) => match tokio::time::timeout(Duration::from_secs(15), p).await {
            Ok(Ok(r)) => Some(r),
            _ => None,
        },
        None => None,
    };

    // Results.
    let mut g = GroupResult {
        received_by_topic: vec![0; args.topics],
        subs_by_topic: vec![0; args.topics],
        ..GroupResult::default()
    };
    let mut results = 0;
    for r in early {
        g.merge(r);
        results += 1;
    }
    let results_give_up = Instant::now()
        + Duration::from_nanos(window.stop_ns.saturating_sub(unix_ns()))
        + Duration::from_secs(15);
    while results < expected {
        match tokio::time::timeout_at(results_give_up, rx.recv()).await {
            Ok(Some(GroupMsg::Result(r))) => {
                g.merge(r);
                results += 1;
            }
            Ok(Some(GroupMsg::Connected(_))) => {}
            Ok(None) | Err(_) => break,
        }
    }
    phase_tx.send_replace(Phase::Stop);

    let report = report(
        &args,
        &Figures {
            started,
            nofile,
            load_start,
            load_end,
            procs,
            connected,
            connect_secs,
            rss_before,
            rss_idle,
            rss_end,
            server_cpu_us: cpu0.zip(cpu1).map(|(a, b)| b.saturating_sub(a)),
            origin_cpu_us: origin0.zip(origin1).map(|(a, b)| b.saturating_sub(a)),
            self_cpu_us: self1.saturating_sub(self0),
            missing_results: expected - results,
            pubr,
            g,
        },
    );
    common::emit(&args.report, &report, &table(&report))
}

/// Spawns a copy of this program owning subscribers `first..first+count`,
/// relays phases to its stdin and its JSON lines from its stdout.
fn spawn_worker(
    w: usize,
    first: usize,
    count: usize,
    deadline_ns: u64,
    mut phase: watch::Receiver<Phase>,
    tx: mpsc::UnboundedSender<GroupMsg>,
) -> Result<()> {
    let exe = std::env::current_exe()?;
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    argv.extend([
        "--worker".into(),
        "--first-sub".into(),
        first.to_string(),
        "--count".into(),
        count.to_string(),
        "--deadline-ns".into(),
        deadline_ns.to_string(),
    ]);
    let mut child = tokio::process::Command::new(exe)
        .args(&argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("spawning a worker")?;
    if let (Some(pid), Ok(mut pids)) = (child.id(), WORKERS.lock()) {
        pids.push(pid);
    }
    let mut stdin = child.stdin.take().context("worker stdin")?;
    let stdout = child.stdout.take().context("worker stdout")?;
    tokio::spawn(async move {
        loop {
            let p = *phase.borrow_and_update();
            if !matches!(p, Phase::Connecting) {
                let Ok(mut line) = serde_json::to_string(&p) else {
                    break;
                };
                line.push('\n');
                if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                    break;
                }
            }
            if matches!(p, Phase::Stop) || phase.changed().await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        let (mut got_connected, mut got_result) = (false, false);
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<GroupMsg>(&line) {
                Ok(m) => {
                    match &m {
                        GroupMsg::Connected(_) => got_connected = true,
                        GroupMsg::Result(_) => got_result = true,
                    }
                    let _ = tx.send(m);
                }
                Err(_) => eprintln!("worker {w}: {line}"),
            }
        }
        let status = child.wait().await;
        let why = format!("worker {w} exited ({status:?})");
        if !got_connected {
            let _ = tx.send(GroupMsg::Connected(Connected {
                ok: 0,
                failed: count as u64,
                first_error: Some(why.clone()),
            }));
        }
        if !got_result {
            eprintln!("switchboard-bench: {why} without a result");
            let _ = tx.send(GroupMsg::Result(GroupResult::default()));
        }
    });
    Ok(())
}

/// A worker: holds its subscribers, reports over stdout, obeys stdin.
async fn worker_main(args: Args) -> Result<()> {
    let target = args.validate()?;
    let deadline = if args.deadline_ns > 0 {
        args.deadline_ns
    } else {
        unix_ns() + (args.hard_limit() * 1e9) as u64
    };
    watchdog(deadline, "a worker");
    procfs::raise_nofile();
    let cfg = Arc::new(args.sub_cfg(target));
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let threads = sub::start(cfg, args.first_sub, args.count, phase_rx.clone(), tx)?;
    let emit = |m: &GroupMsg| -> Result<()> {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, m)?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(())
    };
    let mut c = Connected::default();
    for _ in 0..threads {
        match rx.recv().await {
            Some(GroupMsg::Connected(x)) => c.merge(x),
            _ => break,
        }
    }
    emit(&GroupMsg::Connected(c))?;
    // Phases arrive as JSON lines on stdin; end of input means stop.
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if let Ok(p) = serde_json::from_str::<Phase>(&line) {
                phase_tx.send_replace(p);
            }
        }
        phase_tx.send_replace(Phase::Stop);
    });
    let mut phase = phase_rx;
    let window = loop {
        match *phase.borrow_and_update() {
            Phase::Run(w) => break Some(w),
            Phase::Stop => break None,
            Phase::Connecting => {}
        }
        if phase.changed().await.is_err() {
            break None;
        }
    };
    let sampler = window.map(|w| {
        tokio::spawn(async move {
            sleep_until_ns(w.start_ns).await;
            let c0 = procfs::self_cpu_us();
            sleep_until_ns(w.end_ns).await;
            procfs::self_cpu_us().saturating_sub(c0)
        })
    });
    let mut g = GroupResult::default();
    for _ in 0..threads {
        match rx.recv().await {
            Some(GroupMsg::Result(r)) => g.merge(r),
            Some(GroupMsg::Connected(_)) => {}
            None => break,
        }
    }
    g.cpu_us = match sampler {
        Some(s) if s.is_finished() => s.await.ok(),
        _ => None,
    };
    emit(&GroupMsg::Result(g))?;
    Ok(())
}

struct Figures {
    started: u64,
    nofile: u64,
    load_start: Option<[f64; 3]>,
    load_end: Option<[f64; 3]>,
    procs: usize,
    connected: Connected,
    connect_secs: f64,
    rss_before: Option<u64>,
    rss_idle: Option<u64>,
    rss_end: Option<u64>,
    server_cpu_us: Option<u64>,
    origin_cpu_us: Option<u64>,
    self_cpu_us: u64,
    missing_results: usize,
    pubr: Option<publish::PubResult>,
    g: GroupResult,
}

fn report(args: &Args, f: &Figures) -> Value {
    let dur = args.duration;
    let g = &f.g;
    let h = g.histogram();
    let ok = f.connected.ok;
    let per_conn = |after: Option<u64>| match (f.rss_before, after) {
        (Some(b), Some(a)) if ok > 0 => Some(round((a as f64 - b as f64) / ok as f64, 3)),
        _ => None,
    };
    let deliveries = g.arrivals_in_window;
    let per_delivery =
        |cpu: u64| (deliveries > 0).then(|| round(cpu as f64 / deliveries as f64, 3));
    let loadgen_cpu = f.self_cpu_us + g.cpu_us.unwrap_or(0);
    let mut latency = json!(null);
    if !h.is_empty() {
        latency = json!({
            "count": h.len(),
            "p50": h.value_at_quantile(0.50),
            "p90": h.value_at_quantile(0.90),
            "p99": h.value_at_quantile(0.99),
            "p999": h.value_at_quantile(0.999),
            "max": h.max(),
            "mean": round(h.mean(), 1),
        });
    }
    let pid = match args.server_pid.as_ref().map(|p| &p.0[..]) {
        Some([one]) => json!(one),
        Some(many) => json!(many),
        None => json!(null),
    };
    let mut server = json!({
        "pid": pid,
        "rss_before_kib": f.rss_before,
        "rss_idle_kib": f.rss_idle,
        "rss_end_kib": f.rss_end,
        "rss_per_conn_kib": per_conn(f.rss_idle),
        "rss_per_conn_end_kib": per_conn(f.rss_end),
        "cpu_us": f.server_cpu_us,
        "cpu_percent": f.server_cpu_us.map(|c| round(c as f64 / (dur * 1e4), 1)),
        "cpu_us_per_delivery": f.server_cpu_us.and_then(per_delivery),
    });
    if args.server != Server::Switchboard {
        server["kind"] = json!(args.server.name());
    }
    if let Some(o) = &args.origin_pid {
        server["origin"] = json!({
            "pid": o.0,
            "cpu_us": f.origin_cpu_us,
            "cpu_percent": f.origin_cpu_us.map(|c| round(c as f64 / (dur * 1e4), 1)),
            "cpu_us_per_delivery": f.origin_cpu_us.and_then(per_delivery),
        });
    }
    let loadgen = json!({
        "processes": 1 + f.procs,
        "threads_per_process": args.threads,
        "cpu_us": loadgen_cpu,
        "cpu_percent": round(loadgen_cpu as f64 / (dur * 1e4), 1),
        "cpu_us_per_delivery": per_delivery(loadgen_cpu),
        "nofile_limit": f.nofile,
    });
    let mut out = json!({
        "tool": "switchboard-bench",
        "version": env!("CARGO_PKG_VERSION"),
        "label": args.report.label,
        "started_unix_ms": f.started / 1_000_000,
        "url": args.url,
        "transport": args.transport,
        "app": args.app,
        "mode": if args.idle { "idle" } else { "publish" },
        "subscribers": args.subscribers,
        "topics": args.topics,
        "duration_s": dur,
        "loadavg_start": f.load_start,
        "loadavg_end": f.load_end,
        "connect": {
            "ok": ok,
            "failed": f.connected.failed,
            "first_error": f.connected.first_error,
            "seconds": round(f.connect_secs, 2),
        },
        "server": server,
        "loadgen": loadgen,
        "connections": {
            "alive_at_end": g.alive,
            "closed": g.closed,
            "streams_closed_by_server": g.streams_closed,
            "first_close": g.first_close,
            "pings": g.pings,
            "missing_results": f.missing_results,
        },
    });
    out["summary"] = json!({
        "connected": ok,
        "rss_per_conn_kib": per_conn(f.rss_idle),
        "server_cpu_percent": out["server"]["cpu_percent"].clone(),
        "loadgen_cpu_percent": out["loadgen"]["cpu_percent"].clone(),
    });
    if args.idle {
        return out;
    }
    let empty = publish::PubResult::default();
    let p = f.pubr.as_ref().unwrap_or(&empty);
    let expected: u64 = g
        .subs_by_topic
        .iter()
        .zip(&p.in_window_by_topic)
        .map(|(s, m)| s * m)
        .sum();
    let received = g.received_in_window;
    let lost = expected.saturating_sub(received);
    let offered = ok as f64 * args.rate / args.topics as f64;
    let per_sec = deliveries as f64 / dur;
    let published_in_window: u64 = p.in_window_by_topic.iter().sum();
    let p99 = h.value_at_quantile(0.99);
    let lagging = per_sec < 0.95 * offered
        || (expected > 0 && lost as f64 > 0.001 * expected as f64)
        || p99 > 1_000_000
        || g.streams_closed > 0
        || h.is_empty();
    let rtt = p.rtt_us.as_ref().filter(|h| !h.is_empty()).map(|h| {
        json!({
            "p50": h.value_at_quantile(0.5),
            "p99": h.value_at_quantile(0.99),
            "max": h.max(),
        })
    });
    out["publish"] = json!({
        "rate_offered": args.rate,
        "rate_achieved": round(published_in_window as f64 / dur, 1),
        "payload_bytes": args.payload,
        "warmup_s": args.warmup,
        "messages": p.published,
        "messages_in_window": published_in_window,
        "requests": p.requests,
        "errors": p.errors,
        "failed_messages": p.failed,
        "first_error": p.first_error,
        "rtt_us": rtt,
        "ran": f.pubr.is_some(),
    });
    if let Some(u) = &args.publish_url {
        out["publish"]["url"] = json!(u);
    }
    out["deliveries"] = json!({
        "offered_per_sec": round(offered, 1),
        "per_sec": round(per_sec, 1),
        "bytes_per_sec": round(g.bytes_in_window as f64 / dur, 0),
        "expected": expected,
        "received": received,
        "lost": lost,
        "lost_percent": if expected > 0 { round(100.0 * lost as f64 / expected as f64, 4) } else { 0.0 },
        "duplicates": g.dups,
        "seq_gaps": g.seq_gaps,
        "unparsed": g.unparsed,
        "other_frames": g.other,
        "first_other_frame": g.first_other,
        "events_total": g.events,
    });
    out["latency_us"] = latency;
    out["verdict"] = json!(if lagging { "lagging" } else { "ok" });
    let q = |x: f64| (!h.is_empty()).then(|| h.value_at_quantile(x));
    let sm = &mut out["summary"];
    sm["rate"] = json!(args.rate);
    sm["deliveries_per_sec"] = json!(round(per_sec, 1));
    sm["offered_deliveries_per_sec"] = json!(round(offered, 1));
    sm["server_cpu_us_per_delivery"] = json!(f.server_cpu_us.and_then(per_delivery));
    sm["loadgen_cpu_us_per_delivery"] = json!(per_delivery(loadgen_cpu));
    sm["p50_us"] = json!(q(0.5));
    sm["p99_us"] = json!(q(0.99));
    sm["p999_us"] = json!(q(0.999));
    sm["max_us"] = json!((!h.is_empty()).then(|| h.max()));
    sm["lost"] = json!(lost);
    sm["streams_closed"] = json!(g.streams_closed);
    sm["verdict"] = json!(if lagging { "lagging" } else { "ok" });
    out
}

/// The readable form of a report.
fn table(r: &Value) -> String {
    fn v(x: &Value) -> String {
        match x {
            Value::Null => "-".into(),
            Value::String(s) => s.clone(),
            Value::Number(n) => {
                if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                    format!("{f:.2}")
                } else {
                    n.to_string()
                }
            }
            other => other.to_string(),
        }
    }
    fn ms(x: &Value) -> String {
        x.as_u64()
            .map_or("-".into(), |us| format!("{:.2} ms", us as f64 / 1000.0))
    }
    fn load(x: &Value) -> String {
        x.as_array()
            .map(|a| a.iter().map(v).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| "-".into())
    }
    let mut s = String::new();
    let mut row = |k: &str, val: String| s.push_str(&format!("  {k:<30} {val}\n"));
    row(
        "run",
        format!(
            "{} {} x{} over {} topic(s), {} s{}",
            v(&r["mode"]),
            v(&r["transport"]),
            v(&r["subscribers"]),
            v(&r["topics"]),
            v(&r["duration_s"]),
            common::label_suffix(&r["label"])
        ),
    );
    row(
        "load average start / end",
        format!(
            "{} / {}",
            load(&r["loadavg_start"]),
            load(&r["loadavg_end"])
        ),
    );
    let c = &r["connect"];
    row(
        "connected",
        format!(
            "{} ok, {} failed in {} s",
            v(&c["ok"]),
            v(&c["failed"]),
            v(&c["seconds"])
        ),
    );
    if !c["first_error"].is_null() {
        row("  first error", v(&c["first_error"]));
    }
    let cn = &r["connections"];
    row(
        "alive / closed / streams closed",
        format!(
            "{} / {} / {}{}",
            v(&cn["alive_at_end"]),
            v(&cn["closed"]),
            v(&cn["streams_closed_by_server"]),
            common::paren_suffix(&cn["first_close"])
        ),
    );
    let sv = &r["server"];
    row(
        "server RSS before/idle/end",
        format!(
            "{} / {} / {} KiB",
            v(&sv["rss_before_kib"]),
            v(&sv["rss_idle_kib"]),
            v(&sv["rss_end_kib"])
        ),
    );
    row(
        "server RSS per connection",
        format!(
            "{} KiB idle, {} KiB at end",
            v(&sv["rss_per_conn_kib"]),
            v(&sv["rss_per_conn_end_kib"])
        ),
    );
    if let Some(kind) = sv["kind"].as_str() {
        let pids = match &sv["pid"] {
            Value::Array(a) => a.len(),
            Value::Null => 0,
            _ => 1,
        };
        row("server", format!("{kind} ({pids} process(es) measured)"));
    }
    row(
        "server CPU",
        format!("{} % of a core", v(&sv["cpu_percent"])),
    );
    if let Some(o) = sv.get("origin") {
        row(
            "origin CPU (not in server's)",
            format!(
                "{} % of a core, {} µs per delivery",
                v(&o["cpu_percent"]),
                v(&o["cpu_us_per_delivery"])
            ),
        );
    }
    let lg = &r["loadgen"];
    row(
        "loadgen CPU",
        format!(
            "{} % of a core ({} process(es))",
            v(&lg["cpu_percent"]),
            v(&lg["processes"])
        ),
    );
    if let Some(p) = r.get("publish") {
        let d = &r["deliveries"];
        row(
            "publish rate offered/achieved",
            format!(
                "{} / {} msg/s ({} requests, {} errors)",
                v(&p["rate_offered"]),
                v(&p["rate_achieved"]),
                v(&p["requests"]),
                v(&p["errors"])
            ),
        );
        if !p["first_error"].is_null() {
            row("  first error", v(&p["first_error"]));
        }
        row(
            "publish RTT p50/p99/max",
            format!(
                "{} / {} / {}",
                ms(&p["rtt_us"]["p50"]),
                ms(&p["rtt_us"]["p99"]),
                ms(&p["rtt_us"]["max"])
            ),
        );
        row("deliveries/s offered", v(&d["offered_per_sec"]));
        row("deliveries/s", v(&d["per_sec"]));
        row(
            "expected / received / lost",
            format!(
                "{} / {} / {} ({} %)",
                v(&d["expected"]),
                v(&d["received"]),
                v(&d["lost"]),
                v(&d["lost_percent"])
            ),
        );
        row(
            "duplicates / seq gaps",
            format!("{} / {}", v(&d["duplicates"]), v(&d["seq_gaps"])),
        );
        if !d["first_other_frame"].is_null() {
            row(
                "other frames",
                format!(
                    "{} (first: {})",
                    v(&d["other_frames"]),
                    v(&d["first_other_frame"])
                ),
            );
        }
        row(
            "server CPU per delivery",
            format!("{} µs", v(&sv["cpu_us_per_delivery"])),
        );
        row(
            "loadgen CPU per delivery",
            format!("{} µs", v(&lg["cpu_us_per_delivery"])),
        );
        let l = &r["latency_us"];
        row(
            "latency p50 / p90 / p99",
            format!("{} / {} / {}", ms(&l["p50"]), ms(&l["p90"]), ms(&l["p99"])),
        );
        row(
            "latency p99.9 / max",
            format!("{} / {}", ms(&l["p999"]), ms(&l["max"])),
        );
        row("verdict", v(&r["verdict"]));
    }
    s
}

//! switchboard-bench: a load generator for Switchboard (and any gateway that
//! speaks its wire contract). N subscribers over WebSocket or SSE, spread
//! over loopback source addresses and, past what one process may open, over
//! worker processes; a publisher at a given rate; publish-to-deliver latency,
//! deliveries per second, lost messages, and the server's RSS and CPU per
//! connection and per delivery, as a table and as JSON. Every phase has a
//! deadline and a watchdog ends the run if one is missed.

mod args;
mod common;
mod procfs;
mod publish;
mod report;
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
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use args::Args;
use procfs::unix_ns;
use report::{report, table, Figures};
use sub::{Connected, GroupMsg, GroupResult, Phase, Transport, Window};
use target::Target;

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

//! Subscribers: a group of connections spread over a few OS threads, each
//! thread with its own single-threaded runtime and its own counters and
//! histogram (no locks, no atomics on the receive path). One task per
//! connection, one small reused read buffer each.

mod conn;

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::time::Instant;

use crate::procfs::unix_ns;
use crate::server::{Server, WsReady};
use crate::target::Target;
use crate::wire::{self, Dechunk, Frame};
use conn::{connect, sse_loop, ws_loop, Conn};

/// Read buffer per connection; grows only for a frame larger than this.
const READ_BUF: usize = 4096;
/// Largest frame or line accepted.
const MAX_FRAME: usize = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Ws,
    Sse,
}

#[derive(Debug, Clone)]
pub struct SubCfg {
    pub target: Target,
    pub server: Server,
    pub transport: Transport,
    pub app: String,
    pub topics: usize,
    /// Source addresses 127.0.0.src_from ..= 127.0.0.src_to.
    pub src_from: u8,
    pub src_to: u8,
    pub threads: usize,
    pub connect_timeout: Duration,
    /// Connection attempts in flight per thread.
    pub concurrency: usize,
}

impl SubCfg {
    fn source(&self, i: usize) -> IpAddr {
        crate::common::source_addr(self.src_from, self.src_to, i)
    }
}

/// The measurement window, in Unix nanoseconds (shared by all processes).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Window {
    /// Messages sent (and frames arriving) from here on are measured.
    pub start_ns: u64,
    /// ... until here.
    pub end_ns: u64,
    /// Connections are dropped and results reported at this time.
    pub stop_ns: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Phase {
    Connecting,
    Run(Window),
    Stop,
}

/// Outcome of the connect phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Connected {
    pub ok: u64,
    pub failed: u64,
    pub first_error: Option<String>,
}

impl Connected {
    pub fn merge(&mut self, o: Connected) {
        self.ok += o.ok;
        self.failed += o.failed;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

/// What a group of subscribers measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupResult {
    /// Event frames received, whenever.
    pub events: u64,
    /// Event frames that arrived within the window (throughput).
    pub arrivals_in_window: u64,
    pub bytes_in_window: u64,
    /// Distinct messages sent within the window and received (latency sample).
    pub received_in_window: u64,
    /// The same, per topic index.
    pub received_by_topic: Vec<u64>,
    /// Connected subscribers per topic index.
    pub subs_by_topic: Vec<u64>,
    /// A seq not above the last one seen on that connection.
    pub dups: u64,
    /// Seqs skipped over (messages never seen by a connection, whenever sent).
    pub seq_gaps: u64,
    /// Event frames without `"t":`/`"seq":`.
    pub unparsed: u64,
    pub pings: u64,
    /// Other frames (gap, error, ...).
    pub other: u64,
    /// The first of them, cut to 200 bytes.
    pub first_other: Option<String>,
    /// Streams the server closed while the connection stayed open
    /// (WebSocket `closed` frames, SSE `event: closed`), e.g. slow_consumer.
    pub streams_closed: u64,
    /// Connections the server closed (close frame, `closed`, EOF) or that failed.
    pub closed: u64,
    pub first_close: Option<String>,
    /// Connections still open when results were taken.
    pub alive: u64,
    /// Latency in microseconds: (value, count) for each recorded bucket.
    pub latency_us: Vec<(u64, u64)>,
    /// CPU time of the worker process over the window (set by workers only).
    pub cpu_us: Option<u64>,
}

impl GroupResult {
    pub fn merge(&mut self, o: GroupResult) {
        self.events += o.events;
        self.arrivals_in_window += o.arrivals_in_window;
        self.bytes_in_window += o.bytes_in_window;
        self.received_in_window += o.received_in_window;
        add_vec(&mut self.received_by_topic, &o.received_by_topic);
        add_vec(&mut self.subs_by_topic, &o.subs_by_topic);
        self.dups += o.dups;
        self.seq_gaps += o.seq_gaps;
        self.unparsed += o.unparsed;
        self.pings += o.pings;
        self.other += o.other;
        self.streams_closed += o.streams_closed;
        if self.first_other.is_none() {
            self.first_other = o.first_other;
        }
        self.closed += o.closed;
        if self.first_close.is_none() {
            self.first_close = o.first_close;
        }
        self.alive += o.alive;
        self.latency_us.extend(o.latency_us);
        self.cpu_us = match (self.cpu_us, o.cpu_us) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }

    pub fn histogram(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        for &(v, n) in &self.latency_us {
            let _ = h.record_n(v.max(1), n);
        }
        h
    }
}

fn add_vec(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

pub fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Messages from a group's threads (or, relayed, from a worker process).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum GroupMsg {
    Connected(Connected),
    Result(GroupResult),
}

/// Starts `count` subscribers numbered from `first` on `cfg.threads` threads.
/// Each thread sends one `Connected` once its connect phase ends, then one
/// `Result` at the window's stop time (or at `Phase::Stop`). Returns how
/// many threads were started (= messages of each kind to expect).
pub fn start(
    cfg: Arc<SubCfg>,
    first: usize,
    count: usize,
    phase: watch::Receiver<Phase>,
    tx: mpsc::UnboundedSender<GroupMsg>,
) -> Result<usize> {
    let threads = cfg.threads.clamp(1, count.max(1));
    for j in 0..threads {
        let subs: Vec<usize> = (first + j..first + count).step_by(threads).collect();
        let (cfg, phase, tx) = (cfg.clone(), phase.clone(), tx.clone());
        std::thread::Builder::new()
            .name(format!("subs-{j}"))
            .stack_size(1 << 20)
            .spawn(move || thread_main(cfg, subs, phase, tx))?;
    }
    Ok(threads)
}

/// Per-thread counters, shared by that thread's connection tasks.
struct Stats {
    win_start: u64,
    win_end: u64,
    hist: Histogram<u64>,
    r: GroupResult,
    connected: Connected,
}

impl Stats {
    fn new(topics: usize) -> Self {
        Self {
            win_start: u64::MAX,
            win_end: u64::MAX,
            hist: new_histogram(),
            r: GroupResult {
                received_by_topic: vec![0; topics],
                subs_by_topic: vec![0; topics],
                ..GroupResult::default()
            },
            connected: Connected::default(),
        }
    }

    /// One event frame's payload, received at `now`.
    #[inline]
    fn event(&mut self, payload: &[u8], now: u64, topic: usize, last_seq: &mut u64) {
        self.r.events += 1;
        if now >= self.win_start && now < self.win_end {
            self.r.arrivals_in_window += 1;
            self.r.bytes_in_window += payload.len() as u64;
        }
        let Some((t, seq)) = wire::stamp(payload) else {
            self.r.unparsed += 1;
            return;
        };
        if seq <= *last_seq {
            self.r.dups += 1;
            return;
        }
        if *last_seq != 0 {
            self.r.seq_gaps += seq - *last_seq - 1;
        }
        *last_seq = seq;
        if t >= self.win_start && t < self.win_end {
            self.r.received_in_window += 1;
            self.r.received_by_topic[topic] += 1;
            self.hist
                .saturating_record((now.saturating_sub(t) / 1000).max(1));
        }
    }

    fn other(&mut self, frame: &[u8]) {
        self.r.other += 1;
        if self.r.first_other.is_none() {
            let cut = &frame[..frame.len().min(200)];
            self.r.first_other = Some(String::from_utf8_lossy(cut).into_owned());
        }
    }

    fn closed(&mut self, why: String) {
        self.r.closed += 1;
        self.r.alive = self.r.alive.saturating_sub(1);
        if self.r.first_close.is_none() {
            self.r.first_close = Some(why);
        }
    }

    fn result(&self) -> GroupResult {
        let mut r = self.r.clone();
        r.latency_us = self
            .hist
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        r
    }
}

type SharedStats = Rc<RefCell<Stats>>;

fn thread_main(
    cfg: Arc<SubCfg>,
    subs: Vec<usize>,
    mut phase: watch::Receiver<Phase>,
    tx: mpsc::UnboundedSender<GroupMsg>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let c = Connected {
                ok: 0,
                failed: subs.len() as u64,
                first_error: Some(format!("runtime: {e}")),
            };
            let _ = tx.send(GroupMsg::Connected(c));
            let _ = tx.send(GroupMsg::Result(GroupResult::default()));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let stats: SharedStats = Rc::new(RefCell::new(Stats::new(cfg.topics)));
        let gate = Rc::new(Semaphore::new(cfg.concurrency.max(1)));
        let done = Rc::new((Cell::new(0usize), Notify::new()));
        let deadline = Instant::now() + cfg.connect_timeout;
        let n = subs.len();
        for i in subs {
            let (cfg, stats, gate, done) = (cfg.clone(), stats.clone(), gate.clone(), done.clone());
            tokio::task::spawn_local(async move {
                let conn = {
                    let _permit = gate.acquire().await;
                    tokio::time::timeout_at(deadline, connect(&cfg, i))
                        .await
                        .unwrap_or_else(|_| Err(anyhow!("connect phase timed out")))
                };
                let topic = i % cfg.topics;
                match conn {
                    Ok(c) => {
                        {
                            let mut s = stats.borrow_mut();
                            s.connected.ok += 1;
                            s.r.alive += 1;
                            s.r.subs_by_topic[topic] += 1;
                        }
                        done.0.set(done.0.get() + 1);
                        done.1.notify_one();
                        let why = match c {
                            Conn::Ws(c) => {
                                ws_loop(c, topic, cfg.server.raw_messages(), &stats).await
                            }
                            Conn::Sse(c) => sse_loop(c, topic, &stats).await,
                        };
                        stats.borrow_mut().closed(why);
                    }
                    Err(e) => {
                        {
                            let mut s = stats.borrow_mut();
                            s.connected.failed += 1;
                            if s.connected.first_error.is_none() {
                                s.connected.first_error = Some(format!("subscriber {i}: {e:#}"));
                            }
                        }
                        done.0.set(done.0.get() + 1);
                        done.1.notify_one();
                    }
                }
            });
        }
        // Every attempt ends by `deadline`; the margin covers scheduling.
        let give_up = deadline + Duration::from_secs(2);
        while done.0.get() < n {
            if tokio::time::timeout_at(give_up, done.1.notified())
                .await
                .is_err()
            {
                break;
            }
        }
        let connected = {
            let mut s = stats.borrow_mut();
            let mut c = s.connected.clone();
            c.failed = (n as u64).saturating_sub(c.ok);
            s.connected = c.clone();
            c
        };
        let _ = tx.send(GroupMsg::Connected(connected));
        // Wait for the window (or a stop), then for its end.
        let window = loop {
            let p = *phase.borrow_and_update();
            match p {
                Phase::Run(w) => break Some(w),
                Phase::Stop => break None,
                Phase::Connecting => {}
            }
            if phase.changed().await.is_err() {
                break None;
            }
        };
        if let Some(w) = window {
            {
                let mut s = stats.borrow_mut();
                s.win_start = w.start_ns;
                s.win_end = w.end_ns;
            }
            let left = Duration::from_nanos(w.stop_ns.saturating_sub(unix_ns()));
            let stopped = async {
                loop {
                    if matches!(*phase.borrow_and_update(), Phase::Stop)
                        || phase.changed().await.is_err()
                    {
                        return;
                    }
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(left) => {}
                _ = stopped => {}
            }
        }
        let result = stats.borrow().result();
        let _ = tx.send(GroupMsg::Result(result));
    });
    // Dropping the runtime closes every connection of this thread.
}

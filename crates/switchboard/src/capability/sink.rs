//! Client-to-server buffering: the `buffer` action appends a record to a
//! named sink; each sink's task flushes in batches (on size, on interval and
//! on drain) to a rotating JSON-lines file or a batched HTTP POST. A sink
//! holds at most `max_buffer` records and `max_buffer_bytes` bytes (the batch
//! being written included) while its target is slow or down; past either the
//! oldest records are dropped, and counted.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dispatcher::LambdaClient;
pub use crate::ops::metrics::SinkStats;
use crate::ops::supervise::{supervise, TaskKind};

#[derive(Debug, Clone)]
pub enum SinkTarget {
    File {
        path: PathBuf,
        max_bytes: u64,
        keep: u32,
    },
    Http {
        url: hyper::Uri,
        timeout: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub name: String,
    pub target: SinkTarget,
    /// Records per flush, at most.
    pub batch_size: usize,
    pub flush_interval: Duration,
    /// Records held at most; past it the oldest are dropped.
    pub max_buffer: usize,
    /// Bytes of records held at most; past it the oldest are dropped.
    pub max_buffer_bytes: usize,
}

/// A handle to one sink's task.
pub struct Sink {
    pub name: String,
    queue: Arc<Queue>,
    pub stats: Arc<SinkStats>,
}

/// The records of one sink: appended by streams, taken by its task.
struct Queue {
    pending: Mutex<Pending>,
    /// A batch is full (or the queue closed): the task flushes now.
    ready: Notify,
    max_records: usize,
    max_bytes: usize,
    batch_size: usize,
}

#[derive(Default)]
struct Pending {
    /// Oldest first; the first `in_flight` are the batch being written,
    /// which stay here (and count against the bounds) until it is written:
    /// a write that fails, or a task that panics mid-write, loses nothing.
    records: VecDeque<Bytes>,
    /// Bytes of `records`.
    bytes: usize,
    in_flight: usize,
    /// The drain has begun: what comes now is dropped.
    closed: bool,
}

impl Queue {
    /// Appends `record`, then drops the oldest records not being written
    /// while over a bound; answers (whether `record` is kept, how many
    /// records were dropped).
    fn push(&self, record: Bytes) -> (bool, u64) {
        let mut p = self.pending.lock();
        if p.closed || record.len() > self.max_bytes {
            return (false, 1);
        }
        p.bytes += record.len();
        p.records.push_back(record);
        let mut dropped = 0;
        while p.records.len() > self.max_records || p.bytes > self.max_bytes {
            let oldest = p.in_flight;
            let Some(old) = p.records.remove(oldest) else {
                break;
            };
            p.bytes -= old.len();
            dropped += 1;
        }
        // Dropped last, it was the only one not being written.
        let kept = p.records.len() > p.in_flight;
        if p.records.len() >= self.batch_size {
            self.ready.notify_one();
        }
        (kept, dropped)
    }

    /// The oldest records, up to `batch_size`, to write; they stay queued
    /// until [`Queue::written`]. A batch taken before and not written (its
    /// write failed, or its task panicked) is taken again.
    fn take(&self) -> Vec<Bytes> {
        let mut p = self.pending.lock();
        let n = p.records.len().min(self.batch_size);
        p.in_flight = n;
        p.records.range(..n).cloned().collect()
    }

    /// The batch taken last is written: it leaves the queue.
    fn written(&self) {
        let mut p = self.pending.lock();
        let n = std::mem::take(&mut p.in_flight);
        let bytes: usize = p.records.drain(..n).map(|r| r.len()).sum();
        p.bytes -= bytes;
    }

    /// The batch taken last was not written: it is the oldest again.
    fn not_written(&self) {
        self.pending.lock().in_flight = 0;
    }

    /// Refuses new records; answers how many are left.
    fn close(&self) -> usize {
        let mut p = self.pending.lock();
        p.closed = true;
        p.records.len()
    }

    fn len(&self) -> usize {
        self.pending.lock().records.len()
    }
}

impl Sink {
    pub fn start(
        cfg: SinkConfig,
        client: LambdaClient,
        stop: CancellationToken,
        tracker: &TaskTracker,
    ) -> Self {
        let queue = Arc::new(Queue {
            pending: Mutex::new(Pending::default()),
            ready: Notify::new(),
            max_records: cfg.max_buffer,
            max_bytes: cfg.max_buffer_bytes,
            batch_size: cfg.batch_size,
        });
        let stats = Arc::new(SinkStats::default());
        let name = cfg.name.clone();
        // The queue lives outside the task: its records survive a panic.
        let (task_queue, task_stats) = (queue.clone(), stats.clone());
        tracker.spawn(supervise(TaskKind::Sink, move || {
            let (cfg, queue, client, stats, stop) = (
                cfg.clone(),
                task_queue.clone(),
                client.clone(),
                task_stats.clone(),
                stop.clone(),
            );
            async move { run(cfg, queue, client, stats, stop).await }
        }));
        Self { name, queue, stats }
    }

    /// Queues one record (a JSON object, one line). False: it was dropped
    /// (the sink is draining, or the record alone is over `max_buffer_bytes`).
    /// Older records dropped to make room are counted too.
    pub fn append(&self, record: Bytes) -> bool {
        self.stats.records_in.inc();
        let (kept, dropped) = self.queue.push(record);
        if dropped > 0 {
            self.stats.records_dropped.add(dropped);
            tracing::warn!(sink = %self.name, dropped, "sink buffer full: oldest records dropped");
        }
        kept
    }
}

/// One sink record: `{"app":..,"stream":..,"at_ms":..,"data":..}`.
pub fn record(app: &str, stream: &str, at_ms: u64, data: &serde_json::value::RawValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.get().len() + app.len() + stream.len() + 48);
    out.extend_from_slice(b"{\"app\":");
    switchboard_protocol::write_json_str(&mut out, app);
    out.extend_from_slice(b",\"stream\":");
    switchboard_protocol::write_json_str(&mut out, stream);
    out.extend_from_slice(format!(",\"at_ms\":{at_ms},\"data\":").as_bytes());
    // Compact already (actions are compacted when parsed from the lambda's JSON).
    out.extend(data.get().bytes().filter(|b| *b != b'\n' && *b != b'\r'));
    out.push(b'}');
    out
}

async fn run(
    cfg: SinkConfig,
    queue: Arc<Queue>,
    client: LambdaClient,
    stats: Arc<SinkStats>,
    stop: CancellationToken,
) {
    // A run after a panic mid-write writes that batch again.
    queue.not_written();
    let mut tick = tokio::time::interval(cfg.flush_interval);
    let mut backoff_until: Option<Instant> = None;
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = queue.ready.notified() => {}
            _ = tick.tick() => {}
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                queue.close();
            }
        }
        if backoff_until.is_some_and(|t| Instant::now() < t) && !stopping {
            continue;
        }
        loop {
            let batch = queue.take();
            if batch.is_empty() {
                break;
            }
            let n = batch.len();
            match write(&cfg.target, &client, &batch).await {
                Ok(()) => {
                    queue.written();
                    stats.records_written.add(n as u64);
                    backoff_until = None;
                }
                Err(e) => {
                    queue.not_written();
                    stats.flush_failures.inc();
                    tracing::warn!(sink = %cfg.name, error = %e, buffered = queue.len(), "sink flush failed; will retry");
                    backoff_until = Some(Instant::now() + cfg.flush_interval);
                    break;
                }
            }
        }
        if stopping {
            let lost = queue.close();
            if lost > 0 {
                stats.records_dropped.add(lost as u64);
                tracing::error!(sink = %cfg.name, lost, "sink unavailable at shutdown: records lost");
            }
            break;
        }
    }
}

async fn write(target: &SinkTarget, client: &LambdaClient, batch: &[Bytes]) -> Result<(), String> {
    match target {
        SinkTarget::File {
            path,
            max_bytes,
            keep,
        } => {
            rotate_if_needed(path, *max_bytes, *keep)
                .await
                .map_err(|e| e.to_string())?;
            let mut f = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let mut all = Vec::with_capacity(batch.iter().map(|b| b.len() + 1).sum());
            for rec in batch {
                all.extend_from_slice(rec);
                all.push(b'\n');
            }
            f.write_all(&all).await.map_err(|e| e.to_string())?;
            f.flush().await.map_err(|e| e.to_string())
        }
        SinkTarget::Http { url, timeout } => {
            let mut body = Vec::with_capacity(batch.iter().map(|b| b.len() + 1).sum::<usize>() + 2);
            body.push(b'[');
            for (i, rec) in batch.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(rec);
            }
            body.push(b']');
            client
                .post(url, Bytes::from(body), *timeout)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }
}

/// `path` -> `path.1` -> ... -> `path.keep` once it reaches `max_bytes`.
async fn rotate_if_needed(
    path: &std::path::Path,
    max_bytes: u64,
    keep: u32,
) -> std::io::Result<()> {
    let size = match tokio::fs::metadata(path).await {
        Ok(m) => m.len(),
        Err(_) => return Ok(()),
    };
    if size < max_bytes {
        return Ok(());
    }
    let name = |i: u32| PathBuf::from(format!("{}.{i}", path.display()));
    for i in (1..keep.max(1)).rev() {
        let _ = tokio::fs::rename(name(i), name(i + 1)).await;
    }
    tokio::fs::rename(path, name(1)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_cfg(path: PathBuf, max_bytes: u64) -> SinkConfig {
        SinkConfig {
            name: "f".into(),
            target: SinkTarget::File {
                path,
                max_bytes,
                keep: 2,
            },
            batch_size: 10,
            flush_interval: Duration::from_millis(20),
            max_buffer: 1000,
            max_buffer_bytes: 1 << 20,
        }
    }

    #[tokio::test]
    async fn file_sink_writes_lines_flushes_on_stop_and_rotates() {
        let dir = std::env::temp_dir().join(format!("sb-sink-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.jsonl");
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let sink = Sink::start(
            file_cfg(path.clone(), 100),
            LambdaClient::default(),
            stop.clone(),
            &tracker,
        );

        for i in 0..25 {
            assert!(sink.append(Bytes::from(format!("{{\"i\":{i}}}"))));
        }
        stop.cancel();
        tracker.close();
        tokio::time::timeout(Duration::from_secs(5), tracker.wait())
            .await
            .unwrap();
        let mut lines = Vec::new();
        for p in [
            dir.join("out.jsonl.2"),
            dir.join("out.jsonl.1"),
            path.clone(),
        ] {
            if let Ok(t) = std::fs::read_to_string(&p) {
                lines.extend(t.lines().map(str::to_owned));
            }
        }
        assert_eq!(lines.len(), 25, "every record written once: {lines:?}");
        assert_eq!(lines[0], "{\"i\":0}");
        assert!(dir.join("out.jsonl.1").exists(), "rotated past 100 bytes");
        assert_eq!(sink.stats.records_written.get(), 25);
        assert_eq!(sink.stats.records_dropped.get(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn http_sink_down_keeps_bounded_buffer_and_counts_drops() {
        // A port nobody listens on: every flush fails.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = SinkConfig {
            name: "h".into(),
            target: SinkTarget::Http {
                url: format!("http://127.0.0.1:{port}/").parse().unwrap(),
                timeout: Duration::from_millis(200),
            },
            batch_size: 5,
            flush_interval: Duration::from_millis(20),
            max_buffer: 8,
            max_buffer_bytes: 1 << 20,
        };
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let sink = Sink::start(cfg, LambdaClient::default(), stop.clone(), &tracker);
        for i in 0..20 {
            sink.append(Bytes::from(format!("{{\"i\":{i}}}")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(sink.stats.flush_failures.get() >= 1);
        assert!(
            sink.stats.records_dropped.get() >= 12,
            "20 in, at most 8 kept"
        );
        stop.cancel();
        tracker.close();
        tokio::time::timeout(Duration::from_secs(5), tracker.wait())
            .await
            .unwrap();
        assert_eq!(sink.stats.records_written.get(), 0);
        assert_eq!(
            sink.stats.records_dropped.get(),
            20,
            "the rest is reported lost at shutdown"
        );
    }

    #[test]
    fn the_buffer_is_bounded_in_bytes_and_drops_the_oldest() {
        let q = Queue {
            pending: Mutex::new(Pending::default()),
            ready: Notify::new(),
            max_records: 1000,
            max_bytes: 100,
            batch_size: 4,
        };
        let rec = |i: u8| Bytes::from(vec![b'0' + i; 20]);
        for i in 0..5 {
            assert_eq!(q.push(rec(i)), (true, 0));
        }
        assert_eq!(q.push(rec(5)), (true, 1), "120 bytes: the oldest goes");
        assert_eq!(q.pending.lock().bytes, 100);
        assert_eq!(
            q.push(Bytes::from(vec![b'x'; 101])),
            (false, 1),
            "over the bound alone"
        );
        // The batch being written still counts: room is made in what waits.
        let batch = q.take();
        assert_eq!(batch.len(), 4);
        assert_eq!(q.push(rec(6)), (true, 1), "5 goes, 1-4 are in flight");
        let firsts =
            |q: &Queue| -> Vec<u8> { q.pending.lock().records.iter().map(|r| r[0]).collect() };
        assert_eq!(firsts(&q), b"12346".to_vec());
        // Written in part? Taken again whole until written.
        assert_eq!(q.take().len(), 4);
        let p = q.pending.lock().in_flight;
        assert_eq!(p, 4);
        // It fails: the same batch is taken again, oldest first.
        q.not_written();
        assert_eq!(q.take(), batch);
        q.written();
        assert_eq!(firsts(&q), b"6".to_vec());
        assert_eq!(q.pending.lock().bytes, 20);
        assert_eq!(q.push(Bytes::from(vec![b'y'; 90])), (true, 1), "6 goes");
    }
}

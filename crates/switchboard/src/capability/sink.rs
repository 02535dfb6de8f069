//! Client-to-server buffering: the `buffer` action appends a record to a
//! named sink; each sink's task flushes in batches (on size, on interval and
//! on drain) to a rotating JSON-lines file or a batched HTTP POST. A sink that
//! is down keeps up to `max_buffer` records and retries; past that it drops
//! the oldest, and says so in metrics and logs.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dispatcher::LambdaClient;
pub use crate::ops::metrics::SinkStats;
use crate::ops::supervise::{supervise, Kept, TaskKind};

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
    /// Records kept while the target is down; past it the oldest are dropped.
    pub max_buffer: usize,
}

/// A handle to one sink's task.
pub struct Sink {
    pub name: String,
    tx: mpsc::Sender<Bytes>,
    pub stats: Arc<SinkStats>,
}

impl Sink {
    pub fn start(
        cfg: SinkConfig,
        client: LambdaClient,
        stop: CancellationToken,
        tracker: &TaskTracker,
    ) -> Self {
        let (tx, rx) = mpsc::channel(cfg.max_buffer.clamp(1, 65_536));
        let stats = Arc::new(SinkStats::default());
        let name = cfg.name.clone();
        // The records it holds survive a panic of its task.
        let queue = Kept::new(Queue {
            rx,
            buffer: VecDeque::new(),
            stopping: false,
        });
        let task_stats = stats.clone();
        tracker.spawn(supervise(TaskKind::Sink, move || {
            let (cfg, client, stats, stop) = (
                cfg.clone(),
                client.clone(),
                task_stats.clone(),
                stop.clone(),
            );
            let queue = queue.clone();
            async move { run(cfg, &mut *queue.hold().await, client, stats, stop).await }
        }));
        Self { name, tx, stats }
    }

    /// Queues one record (a JSON object, one line). False: the queue is full and it was dropped.
    pub fn append(&self, record: Bytes) -> bool {
        self.stats.records_in.inc();
        if self.tx.try_send(record).is_err() {
            self.stats.records_dropped.inc();
            tracing::warn!(sink = %self.name, "sink queue full: record dropped");
            return false;
        }
        true
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

/// A sink task's records: queued, and buffered for the target.
struct Queue {
    rx: mpsc::Receiver<Bytes>,
    buffer: VecDeque<Bytes>,
    stopping: bool,
}

async fn run(
    cfg: SinkConfig,
    q: &mut Queue,
    client: LambdaClient,
    stats: Arc<SinkStats>,
    stop: CancellationToken,
) {
    let Queue {
        rx,
        buffer,
        stopping,
    } = q;
    let mut tick = tokio::time::interval(cfg.flush_interval);
    let mut backoff_until: Option<Instant> = None;
    loop {
        tokio::select! {
            r = rx.recv() => match r {
                Some(rec) => {
                    buffer.push_back(rec);
                    while buffer.len() > cfg.max_buffer {
                        buffer.pop_front();
                        stats.records_dropped.inc();
                        tracing::warn!(sink = %cfg.name, max_buffer = cfg.max_buffer, "sink buffer full: oldest record dropped");
                    }
                    if buffer.len() < cfg.batch_size {
                        continue;
                    }
                }
                None => *stopping = true,
            },
            _ = tick.tick() => {}
            _ = stop.cancelled(), if !*stopping => {
                rx.close();
                continue;
            }
        }
        if backoff_until.is_some_and(|t| Instant::now() < t) && !*stopping {
            continue;
        }
        while !buffer.is_empty() {
            let n = buffer.len().min(cfg.batch_size);
            let batch: Vec<Bytes> = buffer.range(..n).cloned().collect();
            match write(&cfg.target, &client, &batch).await {
                Ok(()) => {
                    buffer.drain(..n);
                    stats.records_written.add(n as u64);
                    backoff_until = None;
                }
                Err(e) => {
                    stats.flush_failures.inc();
                    tracing::warn!(sink = %cfg.name, error = %e, buffered = buffer.len(), "sink flush failed; will retry");
                    backoff_until = Some(Instant::now() + cfg.flush_interval);
                    break;
                }
            }
        }
        if *stopping {
            if !buffer.is_empty() {
                stats.records_dropped.add(buffer.len() as u64);
                tracing::error!(sink = %cfg.name, lost = buffer.len(), "sink unavailable at shutdown: records lost");
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
}

//! Dev-only helpers for integration tests: start the real gateway and `php -S`
//! on free loopback ports, and speak WebSocket, SSE and HTTP (plain or TLS)
//! to them with a timeout on every wait, so that no test can hang.

pub mod brokers;
mod gateway;
mod http;
mod metrics;
mod mock_lambda;
mod php;
mod process;
mod raw_peer;
mod sse;
pub mod tls;
mod ws;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use gateway::{gateway_with_config, write_config, Gateway};
pub use http::{get, http_request, publish, publish_many, publish_raw, HttpResponse};
pub use metrics::{wait_app_metric, Metrics};
pub use mock_lambda::{answer_each, MockHandler, MockLambda, MockReply};
pub use php::{php_script, repo_path, LoggingPhp, PhpServer};
pub use process::{peak_rss_kib, process_alive, rss_kib};
pub use raw_peer::{client_frame, raw_get, RawFrame, RawWs};
pub use sse::{expect_sse_closed, SseClient, SseEvent};
pub use ws::{WsClient, WsFrame};

/// Default bound for a single wait in a test (a frame, an event, a response).
pub const WAIT: Duration = Duration::from_secs(10);

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "{prefix}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port that was free a moment ago (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 for a free port")
}

/// Runs `fut` for at most `limit`; `what` names the wait in the error.
pub async fn within<T, F>(limit: Duration, what: &str, fut: F) -> anyhow::Result<T>
where
    F: Future<Output = anyhow::Result<T>>,
{
    match tokio::time::timeout(limit, fut).await {
        Ok(res) => res,
        Err(_) => anyhow::bail!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
/// For conditions outside any connection (a log file, a counter).
pub async fn eventually<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Splits a cursor `<epoch>~<topic>~<id>[~<topic>~<id>...]` into its epoch and
/// (topic, id) pairs; `None` if it does not have that shape. Tests use it to
/// check that an event's `id` records the published message's position.
pub fn parse_cursor(cursor: &str) -> Option<(String, Vec<(String, String)>)> {
    let mut parts = cursor.split('~');
    let epoch = parts.next().filter(|e| !e.is_empty())?.to_owned();
    let mut pairs = Vec::new();
    while let Some(topic) = parts.next() {
        let id = parts.next()?;
        if topic.is_empty() || id.is_empty() {
            return None;
        }
        pairs.push((topic.to_owned(), id.to_owned()));
    }
    Some((epoch, pairs))
}

/// The position a cursor records for `topic`, if any.
pub fn cursor_position(cursor: &str, topic: &str) -> Option<String> {
    parse_cursor(cursor)?
        .1
        .into_iter()
        .find(|(t, _)| t == topic)
        .map(|(_, id)| id)
}

/// Forwards each line of a child's output to the test's stderr, prefixed.
pub(crate) fn forward_lines<R>(prefix: &'static str, reader: R)
where
    R: tokio::io::AsyncBufRead + Unpin + Send + 'static,
{
    pipe_lines(prefix, reader, None);
}

/// Like [`forward_lines`], and keeps each line for the test to read.
pub(crate) fn keep_lines<R>(prefix: &'static str, reader: R) -> Arc<Mutex<Vec<String>>>
where
    R: tokio::io::AsyncBufRead + Unpin + Send + 'static,
{
    let kept = Arc::new(Mutex::new(Vec::new()));
    pipe_lines(prefix, reader, Some(kept.clone()));
    kept
}

fn pipe_lines<R>(prefix: &'static str, reader: R, keep: Option<Arc<Mutex<Vec<String>>>>)
where
    R: tokio::io::AsyncBufRead + Unpin + Send + 'static,
{
    use tokio::io::AsyncBufReadExt;
    tokio::spawn(async move {
        let mut lines = reader.lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[{prefix}] {line}");
            if let Some(Ok(mut v)) = keep.as_ref().map(|k| k.lock()) {
                v.push(line);
            }
        }
    });
}

/// Every line of a JSON-lines file (a lambda's or a sink's log); a missing
/// file is empty, and a line not (yet) complete is skipped.
pub fn read_json_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_split_into_pairs() {
        let (epoch, pairs) = parse_cursor("e1~a/b~3~c~10").unwrap();
        assert_eq!(epoch, "e1");
        assert_eq!(
            pairs,
            vec![("a/b".into(), "3".into()), ("c".into(), "10".into())]
        );
        assert_eq!(cursor_position("e1~a/b~3~c~10", "c").as_deref(), Some("10"));
        assert!(parse_cursor("e1~a").is_none());
        assert!(parse_cursor("").is_none());
    }
}

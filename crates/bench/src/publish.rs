//! The publisher: `POST /v1/publish` over one keep-alive HTTP/1.1
//! connection, paced to a rate. Message `n` is due at `start + n / rate`;
//! whatever is due when a request can go out is sent in one body (a batch
//! when more than one is due), so a high rate needs fewer requests.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::procfs::unix_ns;
use crate::sub::{new_histogram, Window};
use crate::target::Target;
use crate::wire;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct PubCfg {
    pub target: Target,
    pub key: Option<String>,
    pub topics: usize,
    /// Messages per second over all topics.
    pub rate: f64,
    /// Bytes of padding in each message's data.
    pub payload: usize,
    /// Most messages in one request body.
    pub max_batch: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct PubResult {
    /// Messages the gateway accepted (200).
    pub published: u64,
    /// Accepted messages stamped within the window, per topic index.
    pub in_window_by_topic: Vec<u64>,
    pub requests: u64,
    /// Messages in requests that failed.
    pub failed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    #[serde(skip)]
    pub rtt_us: Option<Histogram<u64>>,
}

/// Publishes from `start` until the window's end.
pub async fn run(cfg: PubCfg, start: Instant, w: Window) -> PubResult {
    let end = start + Duration::from_nanos(w.end_ns.saturating_sub(unix_ns()));
    let mut r = PubResult {
        in_window_by_topic: vec![0; cfg.topics],
        rtt_us: Some(new_histogram()),
        ..PubResult::default()
    };
    let mut http = Http::new(cfg.target.clone(), cfg.key.clone());
    let mut seqs = vec![0u64; cfg.topics];
    let pad = "x".repeat(cfg.payload);
    let mut body = String::new();
    // (topic, t) of the messages in the request in flight.
    let mut sent: Vec<(usize, u64)> = Vec::new();
    let mut n: u64 = 0;
    let rate = cfg.rate.max(0.001);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let due = ((now - start).as_secs_f64() * rate).floor() as u64 + 1;
        if due <= n {
            let next = start + Duration::from_secs_f64(n as f64 / rate);
            tokio::time::sleep_until(next.min(end)).await;
            continue;
        }
        let k = (due - n).min(cfg.max_batch.max(1) as u64) as usize;
        body.clear();
        sent.clear();
        let t = unix_ns();
        if k > 1 {
            body.push_str("{\"messages\":[");
        }
        for j in 0..k {
            let topic = ((n + j as u64) % cfg.topics as u64) as usize;
            seqs[topic] += 1;
            if j > 0 {
                body.push(',');
            }
            let _ = write!(
                body,
                "{{\"topic\":\"bench/{topic}\",\"data\":{{\"t\":{t},\"seq\":{}",
                seqs[topic]
            );
            if !pad.is_empty() {
                let _ = write!(body, ",\"pad\":\"{pad}\"");
            }
            body.push_str("}}");
            sent.push((topic, t));
        }
        if k > 1 {
            body.push_str("]}");
        }
        n += k as u64;
        let t0 = Instant::now();
        let res = tokio::time::timeout(REQUEST_TIMEOUT, http.post("/v1/publish", body.as_bytes()))
            .await
            .unwrap_or_else(|_| Err(anyhow!("publish timed out after {REQUEST_TIMEOUT:?}")));
        r.requests += 1;
        match res {
            Ok((200, _)) => {
                if let Some(h) = r.rtt_us.as_mut() {
                    h.saturating_record((t0.elapsed().as_micros() as u64).max(1));
                }
                r.published += k as u64;
                for &(topic, t) in &sent {
                    if t >= w.start_ns && t < w.end_ns {
                        r.in_window_by_topic[topic] += 1;
                    }
                }
            }
            other => {
                r.errors += 1;
                r.failed += k as u64;
                if r.first_error.is_none() {
                    r.first_error = Some(match other {
                        Ok((status, body)) => {
                            format!("HTTP {status}: {}", String::from_utf8_lossy(&body))
                        }
                        Err(e) => format!("{e:#}"),
                    });
                }
                http.tcp = None;
                // Don't spin on a refusing server.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    r
}

/// A minimal keep-alive HTTP/1.1 client for one server.
pub struct Http {
    target: Target,
    auth: Option<String>,
    pub tcp: Option<TcpStream>,
    req: Vec<u8>,
    buf: Vec<u8>,
}

impl Http {
    pub fn new(target: Target, key: Option<String>) -> Self {
        Self {
            target,
            auth: key.map(|k| format!("Authorization: Bearer {k}\r\n")),
            tcp: None,
            req: Vec::new(),
            buf: vec![0; 8192],
        }
    }

    /// POSTs a JSON body; returns the status and the response body.
    pub async fn post(&mut self, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        if self.tcp.is_none() {
            let tcp = TcpStream::connect(self.target.addr).await?;
            tcp.set_nodelay(true)?;
            self.tcp = Some(tcp);
        }
        self.req.clear();
        self.req.extend_from_slice(
            format!(
                "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
                self.target.host,
                body.len(),
                self.auth.as_deref().unwrap_or("")
            )
            .as_bytes(),
        );
        self.req.extend_from_slice(body);
        let res = self.exchange().await;
        if res.is_err() {
            self.tcp = None;
        }
        res
    }

    async fn exchange(&mut self) -> Result<(u16, Vec<u8>)> {
        let tcp = self.tcp.as_mut().ok_or_else(|| anyhow!("not connected"))?;
        tcp.write_all(&self.req).await?;
        let mut end = 0;
        let head = loop {
            if let Some(h) = wire::response_head(&self.buf[..end]) {
                break h;
            }
            if end == self.buf.len() {
                bail!("response head too large");
            }
            let n = tcp.read(&mut self.buf[end..]).await?;
            if n == 0 {
                bail!("connection closed before the response");
            }
            end += n;
        };
        let mut body = Vec::new();
        let mut raw = self.buf[head.len..end].to_vec();
        if head.chunked {
            let mut d = wire::Dechunk::default();
            loop {
                let used = d
                    .feed(&raw, &mut body)
                    .ok_or_else(|| anyhow!("bad chunked body"))?;
                raw.drain(..used);
                if d.done() {
                    break;
                }
                let n = tcp.read(&mut self.buf).await?;
                if n == 0 {
                    bail!("connection closed in the body");
                }
                raw.extend_from_slice(&self.buf[..n]);
            }
        } else {
            let want = head.content_length.unwrap_or(0);
            while raw.len() < want {
                let n = tcp.read(&mut self.buf).await?;
                if n == 0 {
                    bail!("connection closed in the body");
                }
                raw.extend_from_slice(&self.buf[..n]);
            }
            body = raw;
        }
        if head.close {
            self.tcp = None;
        }
        Ok((head.status, body))
    }
}

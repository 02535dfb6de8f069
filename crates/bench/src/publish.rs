//! The publisher: `POST /v1/publish` over one keep-alive HTTP/1.1
//! connection, paced to a rate. Message `n` is due at `start + n / rate`;
//! whatever is due when a request can go out is sent in one body (a batch
//! when more than one is due), so a high rate needs fewer requests.
//!
//! Pushpin: the same batching, as `{"items":[...]}` to `POST /publish/` on
//! the handler's HTTP port (which closes the connection after each request).
//! Nchan takes one message per `POST /pub/<channel>`: the due messages go
//! out as pipelined requests on the keep-alive connection, up to
//! `PIPELINE_DEPTH` at a time, so the offered rate holds without waiting a
//! round trip per message.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::procfs::unix_ns;
use crate::server::{pushpin_item, Server};
use crate::sub::{new_histogram, Window};
use crate::target::Target;
use crate::wire;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Most Nchan publish requests written before their responses are read.
const PIPELINE_DEPTH: usize = 64;

#[derive(Debug, Clone)]
pub struct PubCfg {
    pub server: Server,
    /// Where publish requests go (Pushpin: the handler's HTTP port).
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
    /// Messages the gateway accepted (200; Nchan: 201 or 202).
    pub published: u64,
    /// Accepted messages stamped within the window, per topic index.
    pub in_window_by_topic: Vec<u64>,
    /// HTTP requests (Nchan: one per message).
    pub requests: u64,
    /// Messages in requests that failed.
    pub failed: u64,
    /// Failed requests.
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
    let mut data = String::new();
    let mut reqs: Vec<u8> = Vec::new();
    let mut statuses: Vec<u16> = Vec::new();
    let mut err_body = String::new();
    let mut chan = String::new();
    // (topic, t) of the messages in the request in flight.
    let mut sent: Vec<(usize, u64)> = Vec::new();
    let mut n: u64 = 0;
    let rate = cfg.rate.max(0.001);
    let max_batch = match cfg.server {
        Server::Nchan => cfg.max_batch.clamp(1, PIPELINE_DEPTH),
        _ => cfg.max_batch.max(1),
    };
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
        let k = (due - n).min(max_batch as u64) as usize;
        body.clear();
        reqs.clear();
        sent.clear();
        let t = unix_ns();
        match cfg.server {
            Server::Switchboard => {
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
            }
            Server::Pushpin | Server::Nchan => {
                if cfg.server == Server::Pushpin {
                    body.push_str("{\"items\":[");
                }
                for j in 0..k {
                    let topic = ((n + j as u64) % cfg.topics as u64) as usize;
                    seqs[topic] += 1;
                    data.clear();
                    message_data(t, seqs[topic], &pad, &mut data);
                    if cfg.server == Server::Pushpin {
                        if j > 0 {
                            body.push(',');
                        }
                        chan.clear();
                        let _ = write!(chan, "bench/{topic}");
                        pushpin_item(&chan, &data, &mut body);
                    } else {
                        http.request_into(
                            &format_args!("/pub/bench/{topic}"),
                            data.as_bytes(),
                            &mut reqs,
                        );
                    }
                    sent.push((topic, t));
                }
                if cfg.server == Server::Pushpin {
                    body.push_str("]}");
                }
            }
        }
        n += k as u64;
        let t0 = Instant::now();
        if cfg.server == Server::Nchan {
            statuses.clear();
            let res = tokio::time::timeout(
                REQUEST_TIMEOUT,
                http.pipeline(&reqs, k, &mut statuses, &mut err_body),
            )
            .await
            .unwrap_or_else(|_| Err(anyhow!("publish timed out after {REQUEST_TIMEOUT:?}")));
            r.requests += k as u64;
            let mut failed = 0;
            for (j, &(topic, t)) in sent.iter().enumerate() {
                match statuses.get(j) {
                    Some(200..=299) => {
                        r.published += 1;
                        if t >= w.start_ns && t < w.end_ns {
                            r.in_window_by_topic[topic] += 1;
                        }
                    }
                    Some(&status) => {
                        failed += 1;
                        if r.first_error.is_none() {
                            r.first_error = Some(format!("HTTP {status}: {err_body}"));
                        }
                    }
                    None => failed += 1,
                }
            }
            if let Err(e) = res {
                if r.first_error.is_none() {
                    r.first_error = Some(format!("{e:#}"));
                }
            }
            if failed == 0 {
                if let Some(h) = r.rtt_us.as_mut() {
                    h.saturating_record((t0.elapsed().as_micros() as u64).max(1));
                }
            } else {
                r.errors += failed;
                r.failed += failed;
                http.reset();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            continue;
        }
        let path = match cfg.server {
            Server::Pushpin => "/publish/",
            _ => "/v1/publish",
        };
        let res = tokio::time::timeout(REQUEST_TIMEOUT, http.post(path, body.as_bytes()))
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
                http.reset();
                // Don't spin on a refusing server.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    r
}

/// A message's data as published raw: `{"t":T,"seq":S[,"pad":"..."]}`.
pub fn message_data(t: u64, seq: u64, pad: &str, out: &mut String) {
    let _ = write!(out, "{{\"t\":{t},\"seq\":{seq}");
    if !pad.is_empty() {
        let _ = write!(out, ",\"pad\":\"{pad}\"");
    }
    out.push('}');
}

/// A minimal keep-alive HTTP/1.1 client for one server.
pub struct Http {
    target: Target,
    auth: Option<String>,
    tcp: Option<TcpStream>,
    req: Vec<u8>,
    buf: Vec<u8>,
    /// Bytes read but not yet parsed: `buf[start..end]` (a pipelined
    /// response may arrive with the previous one).
    start: usize,
    end: usize,
}

impl Http {
    pub fn new(target: Target, key: Option<String>) -> Self {
        Self {
            target,
            auth: key.map(|k| format!("Authorization: Bearer {k}\r\n")),
            tcp: None,
            req: Vec::new(),
            buf: vec![0; 8192],
            start: 0,
            end: 0,
        }
    }

    /// Drops the connection (and anything read from it).
    pub fn reset(&mut self) {
        self.tcp = None;
        self.start = 0;
        self.end = 0;
    }

    async fn connect(&mut self) -> Result<()> {
        if self.tcp.is_none() {
            let tcp = TcpStream::connect(self.target.addr).await?;
            tcp.set_nodelay(true)?;
            self.tcp = Some(tcp);
            self.start = 0;
            self.end = 0;
        }
        Ok(())
    }

    /// Appends a POST of `body` (JSON) to `path` to `out`.
    pub fn request_into(&self, path: &dyn std::fmt::Display, body: &[u8], out: &mut Vec<u8>) {
        use std::io::Write as _;
        let _ = write!(
            out,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
            self.target.host,
            body.len(),
            self.auth.as_deref().unwrap_or("")
        );
        out.extend_from_slice(body);
    }

    /// POSTs a JSON body; returns the status and the response body.
    pub async fn post(&mut self, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        let mut req = std::mem::take(&mut self.req);
        req.clear();
        self.request_into(&path, body, &mut req);
        self.req = req;
        let res = self.exchange().await;
        self.reset_on_err(res)
    }

    /// Drops the connection when `res` failed: what is left on it is unknown.
    fn reset_on_err<T>(&mut self, res: Result<T>) -> Result<T> {
        if res.is_err() {
            self.reset();
        }
        res
    }

    async fn exchange(&mut self) -> Result<(u16, Vec<u8>)> {
        self.connect().await?;
        let tcp = self.tcp.as_mut().ok_or_else(|| anyhow!("not connected"))?;
        tcp.write_all(&self.req).await?;
        let mut body = Vec::new();
        let head = self.read_response(&mut body).await?;
        if head.close {
            self.reset();
        }
        Ok((head.status, body))
    }

    /// Writes `n` requests already laid out in `reqs` back to back, then
    /// reads their responses in order, pushing each status to `statuses`;
    /// the body of the first response that isn't 2xx is left in `err_body`.
    /// On an error, `statuses` holds the responses read before it.
    pub async fn pipeline(
        &mut self,
        reqs: &[u8],
        n: usize,
        statuses: &mut Vec<u16>,
        err_body: &mut String,
    ) -> Result<()> {
        let res = self.pipeline_inner(reqs, n, statuses, err_body).await;
        self.reset_on_err(res)
    }

    async fn pipeline_inner(
        &mut self,
        reqs: &[u8],
        n: usize,
        statuses: &mut Vec<u16>,
        err_body: &mut String,
    ) -> Result<()> {
        self.connect().await?;
        let tcp = self.tcp.as_mut().ok_or_else(|| anyhow!("not connected"))?;
        tcp.write_all(reqs).await?;
        let mut body = std::mem::take(&mut self.req);
        let mut bad = false;
        let mut res = Ok(());
        for j in 0..n {
            body.clear();
            match self.read_response(&mut body).await {
                Ok(head) => {
                    statuses.push(head.status);
                    if !(200..300).contains(&head.status) && !bad {
                        bad = true;
                        err_body.clear();
                        err_body.push_str(&String::from_utf8_lossy(&body));
                    }
                    if head.close && j + 1 < n {
                        res = Err(anyhow!(
                            "the server closed the connection after {} of {n} pipelined requests",
                            j + 1
                        ));
                        break;
                    }
                    if head.close {
                        self.reset();
                    }
                }
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        self.req = body;
        res
    }

    /// Reads one response from the connection; its body goes to `body`.
    async fn read_response(&mut self, body: &mut Vec<u8>) -> Result<wire::Head> {
        let head = loop {
            if let Some(h) = wire::response_head(&self.buf[self.start..self.end]) {
                break h;
            }
            if self.start == 0 && self.end == self.buf.len() {
                bail!("response head too large");
            }
            self.fill("connection closed before the response").await?;
        };
        self.start += head.len;
        if head.chunked {
            let mut d = wire::Dechunk::default();
            loop {
                let used = d
                    .feed(&self.buf[self.start..self.end], body)
                    .ok_or_else(|| anyhow!("bad chunked body"))?;
                self.start += used;
                if d.done() {
                    break;
                }
                if self.start == 0 && self.end == self.buf.len() {
                    bail!("chunk line too long");
                }
                self.fill("connection closed in the body").await?;
            }
        } else {
            let mut want = head.content_length.unwrap_or(0);
            loop {
                let take = want.min(self.end - self.start);
                body.extend_from_slice(&self.buf[self.start..self.start + take]);
                self.start += take;
                want -= take;
                if want == 0 {
                    break;
                }
                self.fill("connection closed in the body").await?;
            }
        }
        Ok(head)
    }

    /// Reads more bytes after `end`, first moving unread ones to the front.
    async fn fill(&mut self, eof: &str) -> Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let tcp = self.tcp.as_mut().ok_or_else(|| anyhow!("not connected"))?;
        let n = tcp.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            bail!("{eof}");
        }
        self.end += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests;

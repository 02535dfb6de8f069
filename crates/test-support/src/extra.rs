//! Helpers for the delivery tests (resume, keepalive, slow consumers, lambda
//! failures, drain): config files, `/metrics` as numbers, a process's RSS, a
//! raw WebSocket peer that can stop reading, and a scriptable mock lambda.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use crate::{get, publish, within, Gateway, SseClient, TempDir, WAIT};

// ---- Config, metrics, processes ---------------------------------------------

/// Writes `toml` to `switchboard.toml` in `dir`; pass the path with `--config`.
pub fn write_config(dir: &TempDir, toml: &str) -> anyhow::Result<PathBuf> {
    let path = dir.path().join("switchboard.toml");
    std::fs::write(&path, toml).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The gateway `bin` with [`write_config`] `toml` in `dir` as `--config`,
/// and `args` after it.
pub async fn gateway_with_config(
    bin: &str,
    dir: &TempDir,
    toml: &str,
    args: &[&str],
) -> anyhow::Result<Gateway> {
    let config = write_config(dir, toml)?;
    let mut all = vec!["--config", config.to_str().context("UTF-8 temp path")?];
    all.extend_from_slice(args);
    Gateway::start(bin, &all).await
}

/// Asserts the gateway's end of an SSE response: `event: closed` with
/// `code`, then the end of the response.
pub async fn expect_sse_closed(sse: &mut SseClient, code: u16) -> anyhow::Result<()> {
    let event = sse.next_event(WAIT).await?;
    assert_eq!(event.event.as_deref(), Some("closed"), "{event:?}");
    assert_eq!(event.json()?["code"], code, "{event:?}");
    assert_eq!(
        sse.next_event_or_end(WAIT).await?,
        None,
        "the response ends"
    );
    Ok(())
}

/// `GET /metrics`, parsed: sample name (with its labels, as printed) to value.
#[derive(Debug, Clone, Default)]
pub struct Metrics(HashMap<String, f64>);

impl Metrics {
    pub async fn fetch(http_url: &str) -> anyhow::Result<Self> {
        let resp = get(&format!("{}/metrics", http_url.trim_end_matches('/'))).await?;
        anyhow::ensure!(resp.status == 200, "GET /metrics answered {}", resp.status);
        Ok(Self::parse(&resp.text()))
    }

    /// Prometheus text: `name{labels} value` lines; comments skipped.
    pub fn parse(text: &str) -> Self {
        let map = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.trim().to_owned(), value.trim().parse().ok()?))
            })
            .collect();
        Self(map)
    }

    /// A node-wide sample (`switchboard_published`); 0 if absent.
    pub fn node(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }

    /// A per-app sample: `switchboard_app_<name>{app="<app>"}`; 0 if absent.
    pub fn app(&self, name: &str, app: &str) -> f64 {
        self.0
            .get(&format!("switchboard_app_{name}{{app=\"{app}\"}}"))
            .copied()
            .unwrap_or(0.0)
    }

    /// Whether the sample exists at all (a metric the gateway must expose).
    pub fn has(&self, sample: &str) -> bool {
        self.0.contains_key(sample)
    }
}

/// Resident set size of `pid` in KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// Peak resident set size of `pid` in KiB (`VmHWM`): what it ever held.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Whether a process with `pid` still exists (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Every line of a JSON-lines file (a lambda's or a sink's log); a missing
/// file is empty, and a line not (yet) complete is skipped.
pub fn read_json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Publishes `datas` on `topic` in batches within the publish limits (1,000
/// messages, 4 MiB); returns the ids.
pub async fn publish_many(
    http_url: &str,
    topic: &str,
    datas: &[Value],
) -> anyhow::Result<Vec<String>> {
    const BATCH_BYTES: usize = 3 << 20;
    let mut ids = Vec::with_capacity(datas.len());
    let mut chunks: Vec<&[Value]> = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, d) in datas.iter().enumerate() {
        let size = d.to_string().len() + topic.len() + 32;
        if i > start && (i - start == 1_000 || bytes + size > BATCH_BYTES) {
            chunks.push(&datas[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < datas.len() {
        chunks.push(&datas[start..]);
    }
    for chunk in chunks {
        let messages: Vec<Value> = chunk
            .iter()
            .map(|d| json!({"topic": topic, "data": d}))
            .collect();
        let (status, body) = publish(http_url, None, &json!({ "messages": messages })).await?;
        anyhow::ensure!(status == 200, "batch publish answered {status}: {body}");
        let got = body["ids"].as_array().context("no ids in a batch answer")?;
        ids.extend(got.iter().filter_map(|v| v.as_str().map(str::to_owned)));
    }
    Ok(ids)
}

/// Sends `GET path` with `headers` on a socket with SO_RCVBUF `recv_buffer`
/// and returns it unread: an HTTP client (an SSE reader) that stops reading.
pub async fn raw_get(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    recv_buffer: u32,
) -> anyhow::Result<TcpStream> {
    within(WAIT, "a raw GET", async {
        let socket = TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(recv_buffer)?;
        let mut tcp = socket.connect(addr).await.context("TCP connect")?;
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
        for (name, value) in headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str("\r\n");
        tcp.write_all(req.as_bytes()).await?;
        Ok(tcp)
    })
    .await
}

// ---- A raw WebSocket peer ---------------------------------------------------

/// A frame as the server sent it (no reassembly: the gateway sends whole frames).
#[derive(Debug, Clone, PartialEq)]
pub enum RawFrame {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>),
}

/// A WebSocket client on a bare TCP socket: it does the handshake, then reads
/// and answers only when told, so a test can play a peer that stopped reading
/// (with a small receive buffer, it stops the server's writes quickly).
pub struct RawWs {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    /// Connects to `addr`, upgrades at `path` (e.g. `/v1/ws?app=a&topic=t`).
    /// `recv_buffer`: SO_RCVBUF in bytes, set before connecting.
    pub async fn connect(
        addr: std::net::SocketAddr,
        path: &str,
        recv_buffer: Option<u32>,
    ) -> anyhow::Result<Self> {
        within(WAIT, "a raw WebSocket handshake", async {
            let socket = TcpSocket::new_v4()?;
            if let Some(n) = recv_buffer {
                socket.set_recv_buffer_size(n)?;
            }
            let mut tcp = socket.connect(addr).await.context("TCP connect")?;
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            );
            tcp.write_all(req.as_bytes()).await?;
            let mut buf = Vec::new();
            let end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i;
                }
                let mut tmp = [0u8; 1024];
                let n = tcp.read(&mut tmp).await?;
                anyhow::ensure!(n > 0, "closed during the handshake");
                buf.extend_from_slice(&tmp[..n]);
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            anyhow::ensure!(
                head.starts_with("HTTP/1.1 101"),
                "upgrade refused: {head}"
            );
            buf.drain(..end + 4);
            Ok(Self { tcp, buf })
        })
        .await
    }

    /// Sends a masked text frame.
    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.send_raw(&client_frame(0x1, text.as_bytes())).await
    }

    /// Writes `bytes` as they are: a frame cut short, or not a frame at all.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        within(WAIT, "a raw WebSocket write", async {
            self.tcp.write_all(bytes).await?;
            Ok(())
        })
        .await
    }

    pub async fn send_json(&mut self, value: &Value) -> anyhow::Result<()> {
        self.send_text(&value.to_string()).await
    }

    /// The next frame (pings included, not answered); bounded by `limit`.
    pub async fn recv(&mut self, limit: Duration) -> anyhow::Result<RawFrame> {
        within(limit, "a raw WebSocket frame", async {
            loop {
                if let Some(frame) = self.parse_frame()? {
                    return Ok(frame);
                }
                let mut tmp = [0u8; 16 * 1024];
                let n = self.tcp.read(&mut tmp).await?;
                anyhow::ensure!(n > 0, "connection ended without a close frame");
                self.buf.extend_from_slice(&tmp[..n]);
            }
        })
        .await
    }

    /// The next text frame as JSON satisfying `pred`; other frames are skipped.
    pub async fn recv_json_until(
        &mut self,
        mut pred: impl FnMut(&Value) -> bool,
        limit: Duration,
    ) -> anyhow::Result<Value> {
        within(limit, "a matching JSON frame (raw peer)", async {
            loop {
                match self.recv(Duration::MAX).await? {
                    RawFrame::Text(t) => {
                        let v: Value =
                            serde_json::from_str(&t).with_context(|| format!("not JSON: {t}"))?;
                        if pred(&v) {
                            return Ok(v);
                        }
                    }
                    RawFrame::Close(code) => anyhow::bail!("closed ({code:?}) before a match"),
                    _ => {}
                }
            }
        })
        .await
    }

    /// Reads (and drops) until the server's close frame or the end of the
    /// connection; the close code if a close frame came.
    pub async fn read_until_closed(&mut self, limit: Duration) -> anyhow::Result<Option<u16>> {
        within(limit, "the server to close a raw WebSocket", async {
            loop {
                if let Some(frame) = self.parse_frame()? {
                    if let RawFrame::Close(code) = frame {
                        return Ok(code);
                    }
                    continue;
                }
                let mut tmp = [0u8; 64 * 1024];
                match self.tcp.read(&mut tmp).await {
                    Ok(0) | Err(_) => return Ok(None),
                    Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                }
            }
        })
        .await
    }

    fn parse_frame(&mut self) -> anyhow::Result<Option<RawFrame>> {
        let b = &self.buf;
        if b.len() < 2 {
            return Ok(None);
        }
        let opcode = b[0] & 0x0f;
        anyhow::ensure!(b[1] & 0x80 == 0, "the server masked a frame");
        let (len, head) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&b[2..10]);
                (u64::from_be_bytes(n) as usize, 10)
            }
            126 | 127 => return Ok(None),
            n => (n as usize, 2),
        };
        if b.len() < head + len {
            return Ok(None);
        }
        let payload: Vec<u8> = self.buf[head..head + len].to_vec();
        self.buf.drain(..head + len);
        Ok(Some(match opcode {
            0x1 => RawFrame::Text(String::from_utf8(payload).context("text frame not UTF-8")?),
            0x2 => RawFrame::Binary(payload),
            0x8 => RawFrame::Close(
                (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])),
            ),
            0x9 => RawFrame::Ping(payload),
            0xA => RawFrame::Pong(payload),
            other => anyhow::bail!("unexpected opcode {other:#x} from the server"),
        }))
    }
}

/// A final client frame with a fixed mask.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

// ---- A scriptable mock lambda -----------------------------------------------

/// How the mock answers one request.
#[derive(Debug, Clone)]
pub enum MockReply {
    /// 200 with this JSON body.
    Json(Value),
    /// This status and body, as given (e.g. 503, or 200 with garbage).
    Raw(u16, String),
    /// Waits, then answers.
    Delay(Duration, Box<MockReply>),
    /// Waits until the test opens the gate (sends `true`), then answers.
    Gated(tokio::sync::watch::Receiver<bool>, Box<MockReply>),
    /// Drops the connection without answering.
    Hangup,
}

/// Decides the answer to a request, given its JSON body (`null` if the body is not JSON).
pub type MockHandler = Arc<dyn Fn(&Value) -> MockReply + Send + Sync>;

struct MockShared {
    /// Some: it serves `https://`.
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: Mutex<MockHandler>,
    requests: Mutex<Vec<(tokio::time::Instant, Value)>>,
    conns: Mutex<Vec<JoinHandle<()>>>,
}

/// An HTTP lambda in the test process: counts and records every request, and
/// answers as its handler says (which the test may swap at any time). It can
/// be stopped (connections refused: the lambda is down) and started again on
/// the same port.
pub struct MockLambda {
    port: u16,
    shared: Arc<MockShared>,
    accept: Option<JoinHandle<()>>,
}

impl MockLambda {
    pub async fn start(handler: MockHandler) -> anyhow::Result<Self> {
        Self::start_with(handler, None).await
    }

    /// Like [`MockLambda::start`], serving `https://` with `cert`.
    pub async fn start_tls(
        handler: MockHandler,
        cert: &crate::tls::ServerCert,
    ) -> anyhow::Result<Self> {
        Self::start_with(handler, Some(cert.acceptor()?)).await
    }

    async fn start_with(
        handler: MockHandler,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(MockShared {
            tls,
            handler: Mutex::new(handler),
            requests: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
        });
        let accept = Some(tokio::spawn(accept_loop(listener, shared.clone())));
        Ok(Self {
            port,
            shared,
            accept,
        })
    }

    /// `http://127.0.0.1:PORT/` (`https://` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    pub fn set_handler(&self, handler: MockHandler) {
        *self.shared.handler.lock().expect("mock handler lock") = handler;
    }

    /// Every request body received so far (JSON; `null` if it was not JSON).
    pub fn requests(&self) -> Vec<Value> {
        let requests = self.shared.requests.lock().expect("mock lock");
        requests.iter().map(|(_, r)| r.clone()).collect()
    }

    /// When each request arrived, with its body.
    pub fn timed_requests(&self) -> Vec<(tokio::time::Instant, Value)> {
        self.shared.requests.lock().expect("mock lock").clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().expect("mock lock").len()
    }

    /// Every event of every request, in arrival order.
    pub fn events(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .flat_map(|r| r["events"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Closes the listener and every open connection: calls are refused.
    pub fn stop(&mut self) {
        if let Some(a) = self.accept.take() {
            a.abort();
        }
        for c in self.shared.conns.lock().expect("mock lock").drain(..) {
            c.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let listener = within(WAIT, "rebinding the mock lambda's port", async {
            loop {
                match TcpListener::bind(("127.0.0.1", self.port)).await {
                    Ok(l) => return Ok(l),
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
        .await?;
        self.accept = Some(tokio::spawn(accept_loop(listener, self.shared.clone())));
        Ok(())
    }
}

impl Drop for MockLambda {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<MockShared>) {
    while let Ok((tcp, _)) = listener.accept().await {
        // The head and the body are two writes: without this, Nagle's algorithm
        // and the peer's delayed ACK hold the body back ~40 ms per answer.
        let _ = tcp.set_nodelay(true);
        let shared_conn = shared.clone();
        let conn = tokio::spawn(async move {
            match &shared_conn.tls {
                None => serve_mock_connection(tcp, &shared_conn).await,
                Some(acceptor) => {
                    // A client that refuses the certificate ends here.
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve_mock_connection(tls, &shared_conn).await;
                    }
                }
            }
        });
        let mut conns = shared.conns.lock().expect("mock lock");
        conns.retain(|c| !c.is_finished());
        conns.push(conn);
    }
}

async fn serve_mock_connection<S>(mut tcp: S, shared: &MockShared)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    loop {
        let Some(body) = read_request(&mut tcp, &mut buf).await else {
            return;
        };
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let handler = shared.handler.lock().expect("mock lock").clone();
        shared
            .requests
            .lock()
            .expect("mock lock")
            .push((tokio::time::Instant::now(), request.clone()));
        let mut reply = handler(&request);
        let (status, text) = loop {
            match reply {
                MockReply::Json(v) => break (200, v.to_string()),
                MockReply::Raw(status, text) => break (status, text),
                MockReply::Delay(d, then) => {
                    tokio::time::sleep(d).await;
                    reply = *then;
                }
                MockReply::Gated(mut gate, then) => {
                    // A dropped sender opens the gate too: never hang a test.
                    let _ = gate.wait_for(|open| *open).await;
                    reply = *then;
                }
                MockReply::Hangup => return,
            }
        };
        let head = format!(
            "HTTP/1.1 {status} Mock\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            text.len()
        );
        // (TLS: the flush sends what rustls holds.)
        if tcp.write_all(head.as_bytes()).await.is_err()
            || tcp.write_all(text.as_bytes()).await.is_err()
            || tcp.flush().await.is_err()
        {
            return;
        }
    }
}

/// Reads one request with a Content-Length body; `None` at the end of the connection.
async fn read_request<S>(tcp: &mut S, buf: &mut Vec<u8>) -> Option<Vec<u8>>
where
    S: tokio::io::AsyncRead + Unpin,
{
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut tmp = [0u8; 16 * 1024];
        match tcp.read(&mut tmp).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    buf.drain(..end + 4);
    while buf.len() < len {
        let mut tmp = [0u8; 16 * 1024];
        match tcp.read(&mut tmp).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    Some(buf.drain(..len).collect())
}

/// A lambda answer with one result per event of `request`, each holding the
/// actions `actions_for(event)` gives.
pub fn answer_each(request: &Value, actions_for: impl Fn(&Value) -> Vec<Value>) -> Value {
    let results: Vec<Value> = request["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|e| json!({ "actions": actions_for(e) }))
                .collect()
        })
        .unwrap_or_default();
    json!({ "results": results })
}

/// Polls `/metrics` until the per-app sample `name` satisfies `pred`; returns it.
pub async fn wait_app_metric(
    http_url: &str,
    name: &str,
    app: &str,
    limit: Duration,
    pred: impl Fn(f64) -> bool,
) -> anyhow::Result<f64> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let v = Metrics::fetch(http_url).await?.app(name, app);
        if pred(v) {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("switchboard_app_{name}{{app={app:?}}} is {v} after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

//! Shared by the edge attack tests (attack_edge.rs, attack_proxy.rs,
//! attack_origin.rs): raw sockets from any loopback address, raw request
//! heads, a WebSocket handshake over a socket the test prepared (after a
//! PROXY header, with an `Origin`), a keep-alive HTTP connection opened
//! before a flood, and the check that the gateway still serves.

#![allow(dead_code)] // each test file uses a part of this module

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use test_support::{gateway_with_config, Metrics};
use test_support::{get, publish, within, Gateway, LoggingPhp, WsClient, WAIT};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

pub const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// A gateway with the direct app `pubsub` and the app `edge`
/// (tests/php/edge.php, which pushes the `remote_addr` and `origin` it was
/// given), with `config` (top-level keys, then tables) before the apps.
pub struct EdgeGateway {
    pub gateway: Gateway,
    _lambda: LoggingPhp,
}

impl EdgeGateway {
    pub async fn start(config: &str) -> anyhow::Result<Self> {
        let lambda = LoggingPhp::start("switchboard-attack", "edge.php", &[]).await?;
        let config = format!(
            "{config}\n\n[apps.pubsub]\nlambda = \"direct\"\ntopics = [\"*\"]\n\n[apps.edge]\nlambda = \"{}\"\n",
            lambda.url()
        );
        let gateway = gateway_with_config(BIN, lambda.dir(), &config, &[]).await?;
        Ok(Self {
            gateway,
            _lambda: lambda,
        })
    }
}

/// A TCP connection to `addr` from the loopback address `source` (any of
/// 127.0.0.0/8: distinct client addresses on one machine).
pub async fn connect_from(source: &str, addr: SocketAddr) -> anyhow::Result<TcpStream> {
    within(WAIT, "a TCP connect", async {
        let socket = TcpSocket::new_v4()?;
        socket.bind(format!("{source}:0").parse()?)?;
        Ok(socket.connect(addr).await?)
    })
    .await
}

/// Whether the peer closes `tcp` (EOF or reset) within `limit`; what it
/// sends first is read and dropped.
pub async fn closed_within<R: AsyncRead + Unpin>(tcp: &mut R, limit: Duration) -> bool {
    let read_to_end = async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, read_to_end).await.is_ok()
}

/// Reads a response head from `tcp`: its status, or None if the socket
/// closed first. Bounded by [`WAIT`].
pub async fn read_status<R: AsyncRead + Unpin>(tcp: &mut R) -> anyhow::Result<Option<u16>> {
    within(WAIT, "a response head", async {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match tcp.read(&mut byte).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => head.push(byte[0]),
            }
            anyhow::ensure!(head.len() < 64 * 1024, "response head too long");
        }
        let line = String::from_utf8_lossy(&head);
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line: {line:?}"))?;
        Ok(Some(status))
    })
    .await
}

/// Writes `prefix` (a PROXY header, or nothing) and a WebSocket upgrade
/// request for `path` with `headers`; returns the status of the answer.
pub async fn ws_handshake(
    tcp: &mut TcpStream,
    prefix: &[u8],
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Option<u16>> {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        tcp.peer_addr()?
    );
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    let bytes = [prefix, req.as_bytes()].concat();
    within(WAIT, "writing the handshake", async {
        Ok(tcp.write_all(&bytes).await?)
    })
    .await?;
    read_status(tcp).await
}

/// The next text frame the server sends that parses as JSON and passes
/// `keep` (other frames are skipped). Server frames are unmasked.
pub async fn ws_json_until(
    tcp: &mut TcpStream,
    keep: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    within(WAIT, "a WebSocket frame", async {
        loop {
            let mut head = [0u8; 2];
            tcp.read_exact(&mut head).await?;
            let len = match head[1] & 0x7f {
                126 => usize::from(tcp.read_u16().await?),
                127 => usize::try_from(tcp.read_u64().await?)?,
                n => usize::from(n),
            };
            anyhow::ensure!(len < 1 << 20, "frame too long");
            let mut payload = vec![0u8; len];
            tcp.read_exact(&mut payload).await?;
            if head[0] & 0x0f == 0x1 {
                if let Ok(v) = serde_json::from_slice::<Value>(&payload) {
                    if keep(&v) {
                        return Ok(v);
                    }
                }
            }
        }
    })
    .await
}

/// The `peer` event that tests/php/edge.php pushes at open: its data.
pub async fn peer_event(tcp: &mut TcpStream) -> anyhow::Result<Value> {
    let frame = ws_json_until(tcp, |v| v["type"] == "event" && v["event"] == "peer").await?;
    Ok(frame["data"].clone())
}

/// A keep-alive HTTP/1.1 connection (hyper's client), opened before an
/// attack so that the test can still publish and read metrics while new
/// connections are refused.
pub struct KeepAlive {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authority: String,
}

impl KeepAlive {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        Self::open_with_prefix(addr, b"").await
    }

    /// Writes `prefix` (a PROXY protocol header) first.
    pub async fn open_with_prefix(addr: SocketAddr, prefix: &[u8]) -> anyhow::Result<Self> {
        let tcp = within(WAIT, "a TCP connect", async {
            let mut tcp = TcpStream::connect(addr).await?;
            tcp.write_all(prefix).await?;
            Ok(tcp)
        })
        .await?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        Ok(Self {
            send,
            authority: addr.to_string(),
        })
    }

    /// One request on this connection: the status and the body as text.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, String)> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(Value::to_string).unwrap_or_default(),
            )))?;
        within(WAIT, "a keep-alive request", async {
            let resp = self.send.send_request(req).await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        })
        .await
    }

    pub async fn metrics(&mut self) -> anyhow::Result<Metrics> {
        let (status, text) = self.request("GET", "/metrics", None).await?;
        anyhow::ensure!(status == 200, "GET /metrics answered {status}");
        Ok(Metrics::parse(&text))
    }

    /// Waits until the sample `name` (`switchboard_...` with its labels)
    /// passes `ok`, reading /metrics on this connection; returns its value.
    pub async fn wait_metric(
        &mut self,
        name: &str,
        what: &str,
        ok: impl Fn(f64) -> bool,
    ) -> anyhow::Result<f64> {
        within(WAIT, &format!("{name} {what}"), async {
            loop {
                let v = self.metrics().await?.node(name);
                if ok(v) {
                    return Ok(v);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
    }
}

/// `n` TCP connections to `addr` from `source`, held and sending nothing.
pub async fn flood(source: &str, addr: SocketAddr, n: usize) -> anyhow::Result<Vec<TcpStream>> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(connect_from(source, addr).await?);
    }
    Ok(held)
}

/// Publishes `{"n": n}` on `topic` over `keep` (a publisher connected
/// before the attack) and waits for `ws` to get it.
pub async fn publish_over(
    keep: &mut KeepAlive,
    ws: &mut WsClient,
    topic: &str,
    n: u64,
) -> anyhow::Result<()> {
    let msg = json!({"topic": topic, "data": {"n": n}});
    let (status, body) = keep.request("POST", "/v1/publish", Some(&msg)).await?;
    anyhow::ensure!(status == 200, "publish answered {status}: {body}");
    receives(ws, topic, n).await
}

/// A WebSocket client on the direct app `pubsub`, subscribed to `topic`.
pub async fn subscriber(gateway: &Gateway, topic: &str) -> anyhow::Result<WsClient> {
    let mut ws = WsClient::connect(&gateway.ws_url("/v1/ws")).await?;
    let reply = ws.open("s", "pubsub", json!({ "topic": topic })).await?;
    anyhow::ensure!(reply["type"] == "opened", "open refused: {reply}");
    Ok(ws)
}

/// The subscriber gets the message published as `{"n": n}` on `topic`.
pub async fn receives(ws: &mut WsClient, topic: &str, n: u64) -> anyhow::Result<()> {
    ws.recv_until(|v| v["type"] == "event" && v["data"]["n"] == n, WAIT)
        .await
        .with_context(|| format!("message {n} on {topic}"))?;
    Ok(())
}

/// After an attack: a new, well-behaved client is served (`/healthz`, and
/// a publish with `key` that `ws` receives).
pub async fn still_serves(
    gateway: &Gateway,
    key: Option<&str>,
    ws: &mut WsClient,
    topic: &str,
    n: u64,
) -> anyhow::Result<()> {
    let health = get(&gateway.url("/healthz")).await?;
    anyhow::ensure!(health.status == 200, "healthz answered {}", health.status);
    let msg = json!({"topic": topic, "data": {"n": n}});
    let (status, body) = publish(&gateway.http_url(), key, &msg).await?;
    anyhow::ensure!(status == 200, "publish answered {status}: {body}");
    receives(ws, topic, n).await
}

//! A scriptable mock lambda in the test process: it records every request
//! and answers as the test's handler says (JSON, raw status, delay, a gate
//! the test opens, or a hang-up), over HTTP or HTTPS.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::{within, WAIT};

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

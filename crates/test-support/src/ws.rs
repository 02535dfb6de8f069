//! A WebSocket client that speaks the gateway's JSON frames, every wait bounded.

use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::tls::Stream;
use crate::{within, WAIT};

/// What the server sent, with WebSocket pings and pongs left out.
#[derive(Debug, Clone, PartialEq)]
pub enum WsFrame {
    Json(Value),
    /// A text frame that is not JSON.
    Text(String),
    Binary(Vec<u8>),
    /// A close frame (`code` is `None` for a close without a status).
    Closed {
        code: Option<u16>,
        reason: String,
    },
}

pub struct WsClient {
    ws: WebSocketStream<Stream>,
}

impl WsClient {
    /// Connects (`ws://`, or `wss://` trusting the CAs of
    /// `TestCa::trust`) and completes the upgrade (10 s bound).
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let (rest, tls) = crate::tls::after_scheme(url, "ws", "wss")?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (ws, _) = within(WAIT, &format!("WebSocket upgrade at {url}"), async {
            let stream = crate::tls::connect(authority, tls).await?;
            tokio_tungstenite::client_async(url, stream)
                .await
                .with_context(|| format!("WebSocket connect to {url}"))
        })
        .await?;
        Ok(Self { ws })
    }

    pub async fn send_json(&mut self, value: &Value) -> anyhow::Result<()> {
        self.send_text(&value.to_string()).await
    }

    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.send(Message::Text(text.to_owned())).await
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.send(Message::Binary(bytes)).await
    }

    async fn send(&mut self, msg: Message) -> anyhow::Result<()> {
        within(WAIT, "sending a WebSocket frame", async {
            self.ws.send(msg).await.context("WebSocket send")
        })
        .await
    }

    /// The next frame, whatever it is (10 s bound by default in callers).
    pub async fn recv(&mut self, limit: Duration) -> anyhow::Result<WsFrame> {
        within(limit, "a WebSocket frame", async {
            loop {
                let msg = self
                    .ws
                    .next()
                    .await
                    .context("WebSocket ended without a close frame")?
                    .context("WebSocket read")?;
                return Ok(match msg {
                    Message::Text(text) => match serde_json::from_str(&text) {
                        Ok(value) => WsFrame::Json(value),
                        Err(_) => WsFrame::Text(text),
                    },
                    Message::Binary(bytes) => WsFrame::Binary(bytes),
                    Message::Close(frame) => WsFrame::Closed {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.into_owned()).unwrap_or_default(),
                    },
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                });
            }
        })
        .await
    }

    /// The next frame, which must be a JSON text frame (a server `ping` frame
    /// is returned like any other).
    pub async fn recv_json(&mut self, limit: Duration) -> anyhow::Result<Value> {
        match self.recv(limit).await? {
            WsFrame::Json(value) => Ok(value),
            other => anyhow::bail!("expected a JSON frame, got {other:?}"),
        }
    }

    /// The next JSON frame that is not a keepalive `{"type":"ping",...}`.
    pub async fn recv_json_skip_pings(&mut self, limit: Duration) -> anyhow::Result<Value> {
        self.recv_until(|v| v["type"] != "ping", limit).await
    }

    /// Reads JSON frames until one satisfies `pred`, which is returned; the
    /// frames before it are dropped. Fails on a close or a non-JSON frame.
    pub async fn recv_until(
        &mut self,
        mut pred: impl FnMut(&Value) -> bool,
        limit: Duration,
    ) -> anyhow::Result<Value> {
        let mut skipped = Vec::new();
        let found = within(limit, "a matching JSON frame", async {
            loop {
                let value = self.recv_json(Duration::MAX).await?;
                if pred(&value) {
                    return Ok(value);
                }
                skipped.push(value);
            }
        })
        .await;
        found.with_context(|| format!("frames skipped while waiting: {skipped:?}"))
    }

    /// Reads until the server's close frame and returns its code; other frames
    /// are dropped.
    pub async fn recv_close(&mut self, limit: Duration) -> anyhow::Result<Option<u16>> {
        let mut skipped = Vec::new();
        let found = within(limit, "the WebSocket close frame", async {
            loop {
                match self.recv(Duration::MAX).await? {
                    WsFrame::Closed { code, .. } => return Ok(code),
                    other => skipped.push(other),
                }
            }
        })
        .await;
        found.with_context(|| format!("frames skipped while waiting: {skipped:?}"))
    }

    /// Sends `open` and returns the stream's `opened` or `rejected` frame.
    pub async fn open(&mut self, stream: &str, app: &str, params: Value) -> anyhow::Result<Value> {
        self.send_json(&json!({"type": "open", "stream": stream, "app": app, "params": params}))
            .await?;
        self.open_reply(stream).await
    }

    /// Waits for the `opened` or `rejected` frame of `stream`.
    pub async fn open_reply(&mut self, stream: &str) -> anyhow::Result<Value> {
        self.recv_until(
            |v| v["stream"] == stream && (v["type"] == "opened" || v["type"] == "rejected"),
            WAIT,
        )
        .await
    }

    /// Sends a close frame and waits (bounded) for the server to finish.
    pub async fn close(mut self) -> anyhow::Result<()> {
        within(WAIT, "the WebSocket close handshake", async {
            self.ws.close(None).await.context("WebSocket close")?;
            while let Some(msg) = self.ws.next().await {
                if msg.is_err() {
                    break;
                }
            }
            Ok(())
        })
        .await
    }
}

//! Raw peers on bare TCP sockets that read only when told: a WebSocket
//! client and an HTTP GET, so a test can play a client that stopped reading.

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::{within, WAIT};

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

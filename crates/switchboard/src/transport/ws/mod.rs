//! WebSocket transport: RFC 6455 handshake and framing for client
//! connections, and the task that runs one connection: reads client frames,
//! drains the connection's inbox, writes frames vectored (per-stream head +
//! shared body), sends keepalive pings and closes on drain.

pub mod codec;
pub mod echo;
mod encode;
pub mod handshake;
mod read;
#[cfg(test)]
mod tests;
mod utf8;

use std::io::IoSlice;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use serde_json::{Map, Value};
use switchboard_protocol::client::ServerFrame;
use switchboard_protocol::{AppName, CloseReason, StreamName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Duration, Instant, MissedTickBehavior};

use crate::stream::outbox::Outbox;
use crate::stream::{Connection, Out};
use crate::tls::Socket;
use codec::{FrameDecoder, Opcode};

/// Bad frames tolerated within [`BAD_FRAME_WINDOW`] before the connection closes with 1008.
const MAX_BAD_FRAMES: u32 = 10;
const BAD_FRAME_WINDOW: Duration = Duration::from_secs(60);
/// Bytes read per read call.
const READ_CHUNK: usize = 4096;
/// How long a connection that sent its close frame is still read (see [`send_close`]).
const LINGER: Duration = Duration::from_secs(1);

/// The `GET /v1/ws?app=..` shortcut: stream "0" opened at once.
pub struct Shortcut {
    pub app: AppName,
    pub params: Map<String, Value>,
    pub resume: Option<String>,
}

/// Runs one WebSocket connection until it closes.
///
/// Not an `async fn`: that would keep a copy of the arguments beside the
/// locals they move into, for the connection's whole life; the `async move`
/// block uses its captures in place, so an idle connection's task is smaller.
#[allow(clippy::manual_async_fn)]
pub fn run(
    mut conn: Connection,
    mut tcp: Socket,
    leftover: Bytes,
    shortcut: Option<Shortcut>,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        let gw = conn.gateway().clone();
        gw.node.connections.add(1);
        gw.node.ws_connections_total.inc();
        let mut rbuf = BytesMut::from(&leftover[..]);
        // `leftover` is a view of hyper's 8 KiB read buffer: keeping it would
        // keep the whole buffer alive for the connection's life.
        drop(leftover);
        let mut decoder = FrameDecoder::new(gw.config.limits.max_frame_bytes);
        let mut out: Vec<Out> = Vec::new();
        let mut segs: Vec<Bytes> = Vec::new();
        let mut bad = BadFrames::default();
        let keepalive_every = gw.config.limits.keepalive;
        let mut keepalive =
            tokio::time::interval_at(Instant::now() + keepalive_every, keepalive_every);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let shortcut_name = StreamName::new("0").ok();
        let mut close_with: Option<(u16, &'static str)> = None;
        if let (Some(s), Some(name)) = (shortcut, shortcut_name.clone()) {
            Box::pin(conn.open(name, s.app, s.params, s.resume, &mut out)).await;
        }
        let mut draining = false;
        // One registration with the shutdown token for the connection's
        // life: a fresh `cancelled()` per loop would lock the token's waiter
        // list (shared by every connection) twice per wake-up.
        let shutdown = gw.shutdown.cancelled();
        tokio::pin!(shutdown);
        let write_timeout = gw.config.limits.write_timeout;
        let outbox = conn.outbox.clone();
        // Anything from the client (a frame, a pong) proves it is alive.
        let mut last_heard = Instant::now();
        let mut end = CloseReason::Client;
        // Frames left in `rbuf` when the connection reached a bound.
        let mut backlog = false;
        let mut paused = false;
        loop {
            if !out.is_empty() {
                let shortcut_rejected = out
                .iter()
                .any(|o| matches!(o, Out::Rejected { stream, .. } if Some(stream) == shortcut_name.as_ref()));
                let bytes = encode::frames(out.drain(..), &mut segs);
                gw.node.bytes_out.add(bytes as u64);
                if let Err(reason) = send(&mut tcp, &mut segs, write_timeout, &outbox).await {
                    end = reason;
                    break;
                }
                // Most connections sit idle between bursts: they keep no buffers.
                out.shrink_to(0);
                segs.shrink_to(0);
                if shortcut_rejected && conn.stream_count() == 0 {
                    close_with = Some((1008, "stream rejected"));
                }
            }
            if let Some((code, reason)) = close_with {
                Box::pin(send_close(&mut tcp, code, reason)).await;
                break;
            }
            let now_paused = conn.reads_paused();
            if now_paused && !paused {
                gw.node.reads_paused.inc();
            }
            paused = now_paused;
            if backlog && !paused {
                // The lambdas caught up: what was read before goes first.
                let read = Box::pin(read::decode_frames(
                    &mut conn,
                    &mut decoder,
                    &mut rbuf,
                    &mut out,
                    &mut segs,
                    &mut bad,
                ))
                .await;
                close_with = read.close_with;
                backlog = read.backlog;
                if !segs.is_empty() {
                    if let Err(reason) = send(&mut tcp, &mut segs, write_timeout, &outbox).await {
                        end = reason;
                        break;
                    }
                }
                continue;
            }
            tokio::select! {
                _ = &mut shutdown, if !draining => {
                    draining = true;
                    conn.close_all(CloseReason::Shutdown, &mut out);
                    close_with = Some((1012, "shutdown"));
                }
                read = std::future::poll_fn(|cx| tcp.poll_read_into(cx, &mut rbuf, READ_CHUNK)), if !paused => {
                    match read {
                        Ok(0) | Err(_) => break,
                        Ok(_) => last_heard = Instant::now(),
                    }
                    let read = Box::pin(read::decode_frames(&mut conn, &mut decoder, &mut rbuf, &mut out, &mut segs, &mut bad)).await;
                    close_with = close_with.or(read.close_with);
                    backlog = read.backlog;
                    if rbuf.is_empty() {
                        // Idle connections hold no read buffer.
                        rbuf = BytesMut::new();
                    }
                    if !segs.is_empty() {
                        if let Err(reason) = send(&mut tcp, &mut segs, write_timeout, &outbox).await {
                            end = reason;
                            break;
                        }
                    }
                }
                _ = conn.outbox.ready() => Box::pin(conn.on_inbox(&mut out)).await,
                _ = keepalive.tick() => {
                    if paused {
                        // Not read while paused: its silence proves nothing.
                        last_heard = Instant::now();
                    }
                    if last_heard.elapsed() > keepalive_every * 2 {
                        // Two pings unanswered: a dead peer. Its streams end with `timeout`.
                        conn.close_all(CloseReason::Timeout, &mut out);
                        close_with = Some((1001, "timeout"));
                        continue;
                    }
                    let cursors = conn.cursors();
                    out_ping(&cursors, &mut segs);
                    // A protocol-level ping too: every WebSocket client answers it with a pong.
                    encode::push_frame(Opcode::Ping, Bytes::new(), &mut segs);
                    if let Err(reason) = send(&mut tcp, &mut segs, write_timeout, &outbox).await {
                        end = reason;
                        break;
                    }
                }
            }
        }
        match end {
            CloseReason::SlowConsumer => conn.close_slow_consumer(&mut Vec::new()),
            other => conn.close_all(other, &mut Vec::new()),
        }
        gw.node.connections.add(-1);
    }
}

/// Writes every segment: at once when the socket takes it all (the usual
/// case; no future, no allocation), else in [`flush`], boxed so that an idle
/// connection's task stays small.
async fn send(
    tcp: &mut Socket,
    segs: &mut Vec<Bytes>,
    timeout: Duration,
    outbox: &Outbox,
) -> Result<(), CloseReason> {
    let now = std::future::poll_fn(|cx| Poll::Ready(write_now(tcp, segs, cx))).await;
    match now {
        Ok(true) => Ok(()),
        Ok(false) => Box::pin(flush(tcp, segs, timeout, outbox)).await,
        Err(e) => {
            segs.clear();
            Err(ending_of(&e))
        }
    }
}

/// Most slices handed to one `writev`.
const MAX_IOV: usize = 64;

/// Points `slices` at up to [`MAX_IOV`] of `segs`; returns how many.
fn io_slices<'a>(segs: &'a [Bytes], slices: &mut [IoSlice<'a>; MAX_IOV]) -> usize {
    let n = segs.len().min(MAX_IOV);
    for (slot, seg) in slices.iter_mut().zip(&segs[..n]) {
        *slot = IoSlice::new(seg);
    }
    n
}

/// After a vectored write of `n` bytes from `segs[*done..]`: moves `done`
/// past the segments written whole and advances the one written in part.
fn consume(segs: &mut [Bytes], done: &mut usize, mut n: usize) {
    while n > 0 && *done < segs.len() {
        let len = segs[*done].len();
        if n >= len {
            n -= len;
            *done += 1;
        } else {
            segs[*done].advance(n);
            n = 0;
        }
    }
}

/// Writes what the socket takes without waiting; `true` when all of it went
/// (for TLS: out of rustls's buffer too). What was written is removed from `segs`.
fn write_now(
    tcp: &mut Socket,
    segs: &mut Vec<Bytes>,
    cx: &mut Context<'_>,
) -> std::io::Result<bool> {
    let mut done = 0;
    let result = loop {
        if done == segs.len() {
            break tcp.try_flush(cx);
        }
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let n_slices = io_slices(&segs[done..], &mut slices);
        match tcp.try_write_vectored(cx, &slices[..n_slices]) {
            Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => consume(segs, &mut done, n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        }
    };
    if done == segs.len() {
        segs.clear();
    } else {
        segs.drain(..done);
    }
    result
}

/// Writes every segment, unless the connection falls more than its queue
/// behind meanwhile (policy `close`): then it is a slow consumer, given up
/// on without waiting for the write timeout.
async fn flush(
    tcp: &mut Socket,
    segs: &mut Vec<Bytes>,
    timeout: Duration,
    outbox: &Outbox,
) -> Result<(), CloseReason> {
    tokio::select! {
        biased;
        r = write_all(tcp, segs, timeout) => r.map_err(|e| ending_of(&e)),
        _ = outbox.overflowed() => Err(CloseReason::SlowConsumer),
    }
}

fn out_ping(cursors: &Map<String, Value>, segs: &mut Vec<Bytes>) {
    encode::control(&ServerFrame::Ping { cursors }.to_vec(), segs);
}

/// Sends a close frame and ends the connection: shuts down the sending side
/// (the server closes the TCP connection first, RFC 6455 §7.1.1), then reads
/// and drops what the client still sends (its own close frame) for up to
/// [`LINGER`]. Dropping a socket with unread bytes would send a reset, which
/// can destroy the close frame before the client has read it.
async fn send_close(tcp: &mut Socket, code: u16, reason: &str) {
    let mut segs = Vec::new();
    let payload = Bytes::from(codec::close_payload(code, reason));
    encode::push_frame(Opcode::Close, payload, &mut segs);
    let _ = write_all(tcp, &mut segs, Duration::from_secs(1)).await;
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 512];
    let drain = async { while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Writes every segment, vectored, giving up on a peer that stops reading.
async fn write_all(
    tcp: &mut Socket,
    segs: &mut Vec<Bytes>,
    timeout: Duration,
) -> std::io::Result<()> {
    let write = async {
        let mut done = 0;
        while done < segs.len() {
            let n = {
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                let n_slices = io_slices(&segs[done..], &mut slices);
                tcp.write_vectored(&slices[..n_slices]).await?
            };
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            consume(segs, &mut done, n);
        }
        // TLS: what rustls holds; plain TCP holds nothing.
        tcp.flush().await
    };
    let r = tokio::time::timeout(timeout, write)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
    segs.clear();
    r
}

/// A write that timed out means a peer that stopped reading.
fn ending_of(e: &std::io::Error) -> CloseReason {
    if e.kind() == std::io::ErrorKind::TimedOut {
        CloseReason::Timeout
    } else {
        CloseReason::Client
    }
}

/// Counts malformed frames within a sliding minute.
#[derive(Default)]
struct BadFrames {
    since: Option<Instant>,
    count: u32,
}

impl BadFrames {
    /// Records one; true when the limit is reached.
    fn hit(&mut self) -> bool {
        let now = Instant::now();
        match self.since {
            Some(t) if now.duration_since(t) < BAD_FRAME_WINDOW => self.count += 1,
            _ => {
                self.since = Some(now);
                self.count = 1;
            }
        }
        self.count >= MAX_BAD_FRAMES
    }
}

//! A test-only WebSocket echo endpoint (`GET /v1/_echo`, served only with
//! `serve --ws-echo`): every data message comes back as it came. It reads
//! through the same decoder, limits, ping and close handling as `/v1/ws`
//! (`read::next_message`), so a conformance suite (Autobahn, through
//! `scripts/autobahn.sh`) that drives it checks the gateway's own framing.

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::time::Duration;
use tokio_util::sync::CancellationToken;

use super::codec::{FrameDecoder, Opcode};
use super::encode;
use super::read::{self, Incoming};
use super::{send_close, write_all, READ_CHUNK};
use crate::tls::Socket;

#[cfg(test)]
mod tests;

/// The bounds an echo connection keeps: those of `/v1/ws`.
#[derive(Debug, Clone, Copy)]
pub struct EchoLimits {
    /// Largest message, summed over its fragments (`limits.max_frame_bytes`).
    pub max_message: usize,
    /// A write making no progress for this long ends the connection.
    pub write_timeout: Duration,
}

/// Runs one echo connection until the client closes, the framing fails, or
/// `shutdown` fires (close 1012, as `/v1/ws` does).
pub async fn run(
    mut tcp: Socket,
    leftover: Bytes,
    limits: EchoLimits,
    shutdown: CancellationToken,
) {
    let mut rbuf = BytesMut::from(&leftover[..]);
    drop(leftover);
    let mut decoder = FrameDecoder::new(limits.max_message);
    let mut segs: Vec<Bytes> = Vec::new();
    let (code, reason) = loop {
        let mut ended = None;
        while let Some(incoming) = read::next_message(&mut decoder, &mut rbuf, &mut segs) {
            match incoming {
                Incoming::Text(text) => encode::push_frame(Opcode::Text, text, &mut segs),
                Incoming::Binary(data) => encode::push_frame(Opcode::Binary, data, &mut segs),
                Incoming::Close(code, reason) => {
                    ended = Some((code, reason));
                    break;
                }
            }
        }
        // What was answered before a close or an error goes out first.
        if !segs.is_empty()
            && write_all(&mut tcp, &mut segs, limits.write_timeout)
                .await
                .is_err()
        {
            return;
        }
        if let Some(close) = ended {
            break close;
        }
        rbuf.reserve(READ_CHUNK);
        tokio::select! {
            _ = shutdown.cancelled() => break (1012, "shutdown"),
            read = tcp.read_buf(&mut rbuf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    };
    send_close(&mut tcp, code, reason).await;
}

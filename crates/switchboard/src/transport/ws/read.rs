//! The read side of a WebSocket connection: the client frames in the read
//! buffer, handled in order until the buffer holds no whole frame, or the
//! connection reaches a bound on what it may have waiting for lambdas
//! (`Connection::reads_paused`). Then the rest stays in the buffer, and
//! the socket is not read, until the lambdas catch up: TCP backpressure
//! on the client, nothing dropped.

use bytes::{Bytes, BytesMut};
use switchboard_protocol::client::{ClientFrame, ErrorCode};
use switchboard_protocol::CloseReason;

use super::codec::{self, FrameDecoder, Opcode, WsMessage};
use super::BadFrames;
use crate::stream::{Connection, Out};

/// What handling the buffered frames came to.
#[derive(Default)]
pub(super) struct Read {
    /// Close the connection with this code and reason.
    pub close_with: Option<(u16, &'static str)>,
    /// Stopped at a bound: frames may wait in the buffer.
    pub backlog: bool,
}

impl Read {
    fn closed(code: u16, reason: &'static str) -> Self {
        Self {
            close_with: Some((code, reason)),
            backlog: false,
        }
    }
}

/// Handles the whole frames in `rbuf`: client frames go to `conn` (their
/// answers to `out`), pongs to `segs`.
pub(super) async fn decode_frames(
    conn: &mut Connection,
    decoder: &mut FrameDecoder,
    rbuf: &mut BytesMut,
    out: &mut Vec<Out>,
    segs: &mut Vec<Bytes>,
    bad: &mut BadFrames,
) -> Read {
    loop {
        if conn.reads_paused() {
            return Read {
                close_with: None,
                backlog: !rbuf.is_empty(),
            };
        }
        match decoder.decode(rbuf) {
            Ok(None) => return Read::default(),
            Ok(Some(WsMessage::Text(text))) => match ClientFrame::parse(&text) {
                // Boxed: an idle connection's task stays small.
                Ok(frame) => Box::pin(conn.on_frame(frame, out)).await,
                Err(e) => {
                    conn.gateway().node.bad_frames.inc();
                    out.push(Out::Error {
                        stream: e.stream,
                        code: e.code,
                        message: e.message,
                    });
                    if bad.hit() {
                        return Read::closed(1008, "too many bad frames");
                    }
                }
            },
            Ok(Some(WsMessage::Binary(_))) => {
                conn.gateway().node.bad_frames.inc();
                out.push(Out::Error {
                    stream: None,
                    code: ErrorCode::BadFrame,
                    message: "binary frames are not part of the protocol; send JSON text".into(),
                });
                if bad.hit() {
                    return Read::closed(1008, "too many bad frames");
                }
            }
            Ok(Some(WsMessage::Ping(payload))) => {
                let mut header = [0u8; codec::MAX_HEADER];
                let n = codec::write_header(Opcode::Pong, payload.len(), &mut header);
                segs.push(Bytes::copy_from_slice(&header[..n]));
                segs.push(payload);
            }
            Ok(Some(WsMessage::Pong(_))) => {}
            Ok(Some(WsMessage::Close(_))) => {
                conn.close_all(CloseReason::Client, &mut Vec::new());
                return Read::closed(1000, "");
            }
            Err(e) => return Read::closed(e.close_code(), "protocol error"),
        }
    }
}

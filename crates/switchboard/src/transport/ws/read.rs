//! The read side of a WebSocket connection: the client frames in the read
//! buffer, handled in order until the buffer holds no whole frame, or the
//! connection reaches a bound on what it may have waiting for lambdas
//! (`Connection::reads_paused`). Then the rest stays in the buffer, and
//! the socket is not read, until the lambdas catch up: TCP backpressure
//! on the client, nothing dropped.

use bytes::{Bytes, BytesMut};
use switchboard_protocol::client::{ClientFrame, ErrorCode};
use switchboard_protocol::CloseReason;

use super::codec::{FrameDecoder, Opcode, WsMessage};
use super::encode;
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

/// What the framing gives an endpoint, once pings and pongs are dealt with.
pub(super) enum Incoming {
    Text(Bytes),
    Binary(Bytes),
    /// The connection ends: send a close frame with this code and reason, then drop it.
    Close(u16, &'static str),
}

/// The next data message in `rbuf`, or `None` until more bytes arrive. Pings are answered
/// (pongs into `segs`), pongs ignored; the client's close, and any framing error, end the
/// connection with the code RFC 6455 gives them. Every endpoint reads through this, so the
/// Autobahn echo endpoint (`super::echo`) checks exactly what `/v1/ws` does.
pub(super) fn next_message(
    decoder: &mut FrameDecoder,
    rbuf: &mut BytesMut,
    segs: &mut Vec<Bytes>,
) -> Option<Incoming> {
    loop {
        match decoder.decode(rbuf) {
            Ok(None) => return None,
            Ok(Some(WsMessage::Text(text))) => return Some(Incoming::Text(text)),
            Ok(Some(WsMessage::Binary(data))) => return Some(Incoming::Binary(data)),
            Ok(Some(WsMessage::Ping(payload))) => encode::push_frame(Opcode::Pong, payload, segs),
            Ok(Some(WsMessage::Pong(_))) => {}
            Ok(Some(WsMessage::Close(_))) => return Some(Incoming::Close(1000, "")),
            Err(e) => return Some(Incoming::Close(e.close_code(), e.close_reason())),
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
        match next_message(decoder, rbuf, segs) {
            None => return Read::default(),
            Some(Incoming::Text(text)) => match ClientFrame::parse(&text) {
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
            Some(Incoming::Binary(_)) => {
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
            Some(Incoming::Close(code, reason)) => {
                conn.close_all(CloseReason::Client, &mut Vec::new());
                return Read::closed(code, reason);
            }
        }
    }
}

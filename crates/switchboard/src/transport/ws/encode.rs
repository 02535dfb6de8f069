//! Turns [`Out`]s into WebSocket frames as byte segments: an event is a small
//! per-stream head plus, for topic messages, a body shared by every stream.

use bytes::Bytes;
use switchboard_protocol::client::{self, ServerFrame};

use super::codec::{write_header, Opcode, MAX_HEADER};
use crate::stream::{Body, Out};

/// Appends the frames of `outs` to `segs`; returns their byte count.
pub(super) fn frames(outs: impl Iterator<Item = Out>, segs: &mut Vec<Bytes>) -> usize {
    let mut total = 0;
    for o in outs {
        total += match o {
            Out::Event {
                stream,
                cursor,
                event,
                body,
            } => {
                let mut head = Vec::with_capacity(96);
                head.resize(MAX_HEADER, 0);
                client::event_head(
                    &mut head,
                    stream.as_str(),
                    cursor.as_ref().map(|c| c.as_str()),
                    event.as_deref(),
                );
                let tail = match body {
                    Body::Topic(msg) => msg.ws_tail().clone(),
                    Body::Data(data) => {
                        client::event_tail(&mut head, data.get().as_bytes());
                        Bytes::new()
                    }
                };
                let payload = head.len() - MAX_HEADER + tail.len();
                let mut header = [0u8; MAX_HEADER];
                let n = write_header(Opcode::Text, payload, &mut header);
                // Right-align the header in the space reserved before the head.
                head[MAX_HEADER - n..MAX_HEADER].copy_from_slice(&header[..n]);
                let frame = Bytes::from(head).slice(MAX_HEADER - n..);
                let len = frame.len() + tail.len();
                segs.push(frame);
                if !tail.is_empty() {
                    segs.push(tail);
                }
                len
            }
            Out::Opened { stream } => control(
                &ServerFrame::Opened {
                    stream: stream.as_str(),
                }
                .to_vec(),
                segs,
            ),
            Out::Rejected {
                stream,
                code,
                reason,
            } => control(
                &ServerFrame::Rejected {
                    stream: stream.as_str(),
                    code,
                    reason: &reason,
                }
                .to_vec(),
                segs,
            ),
            Out::Closed {
                stream,
                code,
                reason,
            } => control(
                &ServerFrame::Closed {
                    stream: stream.as_str(),
                    code,
                    reason: &reason,
                }
                .to_vec(),
                segs,
            ),
            Out::Error {
                stream,
                code,
                message,
            } => control(
                &ServerFrame::Error {
                    stream: stream.as_deref(),
                    code,
                    message: &message,
                }
                .to_vec(),
                segs,
            ),
            Out::Gap { stream, topics } => {
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                control(
                    &ServerFrame::Gap {
                        stream: stream.as_str(),
                        topics: &topics,
                    }
                    .to_vec(),
                    segs,
                )
            }
            Out::Pong => control(&ServerFrame::Pong.to_vec(), segs),
        };
    }
    total
}

/// One whole text frame in one segment.
pub(super) fn control(payload: &[u8], segs: &mut Vec<Bytes>) -> usize {
    let mut header = [0u8; MAX_HEADER];
    let n = write_header(Opcode::Text, payload.len(), &mut header);
    let mut frame = Vec::with_capacity(n + payload.len());
    frame.extend_from_slice(&header[..n]);
    frame.extend_from_slice(payload);
    let len = frame.len();
    segs.push(Bytes::from(frame));
    len
}

/// Appends one server frame of any opcode (header, then `payload` as it is) to `segs`.
pub(super) fn push_frame(opcode: Opcode, payload: Bytes, segs: &mut Vec<Bytes>) {
    let mut header = [0u8; MAX_HEADER];
    let n = write_header(opcode, payload.len(), &mut header);
    segs.push(Bytes::copy_from_slice(&header[..n]));
    if !payload.is_empty() {
        segs.push(payload);
    }
}

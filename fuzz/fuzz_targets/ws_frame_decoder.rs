//! The WebSocket frame decoder on any client bytes, fed whole and in pieces:
//! never panics, the two feeds give the same messages and the same error,
//! texts are UTF-8 and no data message exceeds the limit.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchboard::transport::ws::codec::{FrameDecoder, WsError, WsMessage};

const MAX: usize = 1024;

fn check(m: &WsMessage) {
    match m {
        WsMessage::Text(t) => {
            assert!(std::str::from_utf8(t).is_ok());
            assert!(t.len() <= MAX);
        }
        WsMessage::Binary(b) => assert!(b.len() <= MAX),
        WsMessage::Ping(p) | WsMessage::Pong(p) => assert!(p.len() <= 125),
        WsMessage::Close(_) => {}
    }
}

/// Decodes `pieces` fed one after another: every message, then the error if any.
fn run(pieces: &[&[u8]]) -> (Vec<WsMessage>, Option<WsError>) {
    let mut decoder = FrameDecoder::new(MAX);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(m)) => {
                    check(&m);
                    out.push(m);
                }
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, bytes)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 16) + 1;
    let whole = run(&[bytes]);
    let pieces: Vec<&[u8]> = bytes.chunks(step).collect();
    let split = run(&pieces);
    assert_eq!(whole, split, "whole and split feeds disagree");
});

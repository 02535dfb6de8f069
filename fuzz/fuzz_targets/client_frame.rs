//! `ClientFrame::parse` on any bytes: never panics; a refusal is a
//! `bad_frame` error; `send` data is JSON that strict readers accept.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_protocol::client::{ClientFrame, ErrorCode};

fuzz_target!(|data: &[u8]| {
    match ClientFrame::parse(data) {
        Ok(ClientFrame::Open { stream, app, .. }) => {
            assert!(!stream.as_str().is_empty());
            assert!(!app.as_str().is_empty());
        }
        Ok(ClientFrame::Send { data: payload, .. }) => {
            // Readable by strict JSON readers (numbers fit an f64, escapes
            // are valid Unicode): the lambda gets it in a batch of many
            // streams' events (docs/fuzzing.md, finding 1).
            let _: serde_json::Value =
                serde_json::from_str(payload.get()).expect("send data is strict JSON");
        }
        Ok(ClientFrame::Close { .. } | ClientFrame::Ping) => {}
        Err(e) => assert_eq!(e.code, ErrorCode::BadFrame),
    }
});

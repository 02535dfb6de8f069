//! `ClientFrame::parse` on any bytes: never panics; a refusal is a
//! `bad_frame` error; an accepted frame round-trips through its fields.
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
            // The payload is valid JSON syntax by construction. (Not
            // necessarily readable as `serde_json::Value`: numbers outside
            // f64's range pass, see docs/fuzzing.md.)
            let _: serde::de::IgnoredAny =
                serde_json::from_str(payload.get()).expect("send data is JSON");
        }
        Ok(ClientFrame::Close { .. } | ClientFrame::Ping) => {}
        Err(e) => assert_eq!(e.code, ErrorCode::BadFrame),
    }
});

//! `PublishBody::parse` on any bytes: never panics; an accepted body obeys
//! PROTOCOL.md's limits, and each message's data is compact JSON that is
//! safe to splice into a frame or an SSE `data:` line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_protocol::publish::PublishBody;
use switchboard_protocol::{MAX_MESSAGE_DATA, MAX_PUBLISH_BATCH};

fuzz_target!(|data: &[u8]| {
    match PublishBody::parse(data) {
        Ok(body) => {
            assert!(!body.messages.is_empty());
            assert!(body.messages.len() <= MAX_PUBLISH_BATCH);
            if body.single {
                assert_eq!(body.messages.len(), 1);
            }
            for m in &body.messages {
                let d = m.data.get();
                assert!(d.len() <= MAX_MESSAGE_DATA);
                assert!(
                    !d.contains('\n') && !d.contains('\r'),
                    "data not compact: {d:?}"
                );
                // Readable by strict JSON readers (docs/fuzzing.md, finding 1).
                let _: serde_json::Value = serde_json::from_str(d).expect("data is strict JSON");
            }
        }
        Err(e) => assert!(matches!(e.status, 400 | 413), "status {}", e.status),
    }
});

//! `lambda::parse_response` on any bytes and any expected count: never
//! panics; an accepted answer has exactly one result per event; the data
//! and state of valid actions are JSON that strict readers accept.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_protocol::lambda::{parse_response, Action, ResponseError};

fuzz_target!(|data: &[u8]| {
    let Some((&n, body)) = data.split_first() else {
        return;
    };
    let expected = usize::from(n % 8);
    match parse_response(body, expected) {
        Ok(results) => {
            assert_eq!(results.len(), expected);
            for result in results {
                for a in result.iter().flatten() {
                    let _ = a.kind();
                    // What the gateway forwards is readable by strict JSON
                    // readers (docs/fuzzing.md, finding 1).
                    let data = match a {
                        Action::Push { data, .. }
                        | Action::Publish { data, .. }
                        | Action::Buffer { data, .. } => data,
                        Action::SetState { state } => state,
                        _ => continue,
                    };
                    let _: serde_json::Value =
                        serde_json::from_str(data.get()).expect("action data is strict JSON");
                }
            }
        }
        Err(ResponseError::WrongCount { expected: e, got }) => {
            assert_eq!(e, expected);
            assert_ne!(got, expected);
        }
        Err(ResponseError::Invalid(_)) => {}
    }
});

//! `lambda::parse_response` on any bytes and any expected count: never
//! panics; an accepted answer has exactly one result per event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_protocol::lambda::{parse_response, ResponseError};

fuzz_target!(|data: &[u8]| {
    let Some((&n, body)) = data.split_first() else {
        return;
    };
    let expected = usize::from(n % 8);
    match parse_response(body, expected) {
        Ok(results) => {
            assert_eq!(results.len(), expected);
            for result in results {
                for action in result {
                    if let Ok(a) = action {
                        let _ = a.kind();
                    }
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

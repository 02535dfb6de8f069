//! `Cursor::parse` on any string: never panics, and what it accepts encodes
//! back to the same bytes (a client sends back exactly what it was given).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_protocol::Cursor;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cursor) = Cursor::parse(text) {
        assert_eq!(cursor.encode(), text);
        for (topic, id) in &cursor.positions {
            assert!(cursor.position(topic.as_str()).is_some());
            assert!(!id.is_empty());
        }
    }
});

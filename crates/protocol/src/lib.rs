//! The Switchboard wire contract (shared/PROTOCOL.md) as plain serde types:
//! client frames, lambda events and actions, publish bodies, cursors.
//! No IO here, so the gateway, tests, SDK contract checks and benches share one definition.

pub mod client;
pub mod close;
pub mod cursor;
pub mod data;
pub mod lambda;
pub mod names;
pub mod publish;

pub use close::CloseReason;
pub use cursor::Cursor;
pub use names::{AppName, NameError, StreamName, Topic};

/// Largest serialized `data` of one published message (PROTOCOL.md "Publishing").
pub const MAX_MESSAGE_DATA: usize = 64 * 1024;
/// Most messages in one publish batch.
pub const MAX_PUBLISH_BATCH: usize = 1_000;
/// Largest publish request body.
pub const MAX_PUBLISH_BODY: usize = 4 * 1024 * 1024;
/// Default largest client frame.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;

/// Writes `s` as a JSON string (with quotes) into `out`.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json's string escaping cannot fail when writing into a Vec.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// For `Option<Box<RawValue>>` fields with `#[serde(default)]`: a present
/// `null` is data (`Some("null")`), only an absent field is `None`.
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Box<serde_json::value::RawValue>>, D::Error> {
    serde::Deserialize::deserialize(d).map(Some)
}

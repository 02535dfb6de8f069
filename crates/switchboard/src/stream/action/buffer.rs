//! `buffer`: client-to-server data appended to a named sink, flushed in batches.

use bytes::Bytes;
use serde_json::value::RawValue;

use super::Origin;
use crate::capability::timer_shards::unix_ms;
use crate::gateway::Sinks;
use crate::stream::Connection;

pub(super) fn apply(conn: &mut Connection, slot: u32, sink: &str, data: &RawValue) {
    if let Some(s) = conn.streams.get(&slot) {
        append(&s.origin(), &conn.gw.sinks, sink, data);
    }
}

/// Appends the record of `origin`'s `data` to sink `sink`; no such sink:
/// the action is invalid.
pub fn append(origin: &Origin<'_>, sinks: &Sinks, sink: &str, data: &RawValue) {
    let Some(target) = sinks.get(sink) else {
        return origin.invalid(&format!("no sink named {sink:?} is configured"));
    };
    let record =
        crate::capability::sink::record(origin.app.as_str(), origin.stream_id, unix_ms(), data);
    origin.stats.sink_records.inc();
    target.append(Bytes::from(record));
}

//! `buffer`: client-to-server data appended to a named sink, flushed in batches.

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::capability::timer::unix_ms;
use crate::stream::Connection;

pub(super) fn apply(conn: &mut Connection, slot: u32, sink: &str, data: &RawValue) {
    let Some(s) = conn.streams.get(&slot) else {
        return;
    };
    let Some(target) = conn.gw.sinks.get(sink) else {
        return conn.invalid_action(slot, &format!("no sink named {sink:?} is configured"));
    };
    let record = crate::capability::sink::record(s.app.name.as_str(), &s.id, unix_ms(), data);
    s.app.stats.sink_records.inc();
    target.append(Bytes::from(record));
}

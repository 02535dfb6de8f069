//! `push`: data to this stream's client; it carries the cursor of the message
//! it answers, if any.

use serde_json::value::RawValue;

use crate::stream::{Body, Connection, CursorText, Out};

pub(super) fn apply(
    conn: &mut Connection,
    slot: u32,
    data: Box<RawValue>,
    event: Option<String>,
    cursor: Option<&CursorText>,
    out: &mut Vec<Out>,
) {
    let Some(s) = conn.streams.get(&slot) else {
        return;
    };
    let data = match switchboard_protocol::publish::compact(data) {
        Ok(d) => d,
        Err(e) => return conn.invalid_action(slot, &e.to_string()),
    };
    s.app.stats.pushes.inc();
    s.app.stats.events_out.inc();
    out.push(Out::Event {
        stream: s.name.clone(),
        cursor: cursor.cloned(),
        event,
        body: Body::Data(data),
    });
}

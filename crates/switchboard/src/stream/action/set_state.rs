//! `set_state`: the stream's opaque state, sent back in every later event.

use serde_json::value::RawValue;

use crate::stream::Connection;

pub(super) fn apply(conn: &mut Connection, slot: u32, state: Box<RawValue>) {
    let max = conn.gw.config.limits.max_state_bytes;
    let state = match switchboard_protocol::publish::compact(state) {
        Ok(s) if s.get().len() <= max => s,
        Ok(s) => {
            return conn.invalid_action(
                slot,
                &format!(
                    "state of {} bytes is over the {max}-byte limit",
                    s.get().len()
                ),
            )
        }
        Err(e) => return conn.invalid_action(slot, &e.to_string()),
    };
    if let Some(s) = conn.streams.get_mut(&slot) {
        s.state = if state.get() == "null" {
            None
        } else {
            Some(state)
        };
    }
}

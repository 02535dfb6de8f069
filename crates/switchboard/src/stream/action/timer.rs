//! `timer` and `cancel_timer`: named timers of a stream, fired as `timer` events.

use tokio::time::Duration;

use crate::stream::Connection;

pub(super) fn set(
    conn: &mut Connection,
    slot: u32,
    name: String,
    every_ms: Option<u64>,
    after_ms: Option<u64>,
) {
    let min = conn.gw.config.limits.min_timer;
    let (after, every) = match (every_ms, after_ms) {
        (Some(e), _) => (Duration::from_millis(e), Some(Duration::from_millis(e))),
        (None, Some(a)) => (Duration::from_millis(a), None),
        (None, None) => return conn.invalid_action(slot, "timer needs every_ms or after_ms"),
    };
    if after < min {
        return conn.invalid_action(
            slot,
            &format!("timer interval is below the {} ms minimum", min.as_millis()),
        );
    }
    if let Err(why) = conn.set_timer(slot, name, after, every) {
        conn.invalid_action(slot, &why);
    }
}

pub(super) fn cancel(conn: &mut Connection, slot: u32, name: &str) {
    if let Some(s) = conn.streams.get_mut(&slot) {
        s.timers.cancel(name);
        crate::stream::named_timers::drop_queued_ticks(&mut s.pending, name);
    }
}

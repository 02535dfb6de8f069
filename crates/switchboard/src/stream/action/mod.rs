//! Lambda actions, one file per kind: adding an action is one file and one
//! match arm. Each applies to one stream, in the order the lambda gave.

mod buffer;
mod close;
mod publish;
mod push;
mod set_state;
mod subscribe;
mod timer;

use std::ops::ControlFlow;

use switchboard_protocol::lambda::Action;

use super::{Connection, CursorText, Out};

/// What the answered event came from: pushes carry its cursor, publishes
/// its hop (the most of its messages'; 0 for events without messages).
#[derive(Default)]
pub(super) struct Cause {
    pub cursor: Option<CursorText>,
    pub hop: u8,
}

/// Applies `action` to the stream in `slot`. Break: the stream is closed.
pub(super) async fn apply(
    conn: &mut Connection,
    slot: u32,
    action: Action,
    cause: &Cause,
    out: &mut Vec<Out>,
) -> ControlFlow<()> {
    match action {
        Action::Subscribe {
            topic,
            deliver,
            rate_limit,
            dedup,
            batch,
        } => subscribe::subscribe(conn, slot, topic, deliver, rate_limit, dedup, batch).await,
        Action::Unsubscribe { topic } => subscribe::unsubscribe(conn, slot, &topic),
        Action::Push { data, event } => {
            push::apply(conn, slot, data, event, cause.cursor.as_ref(), out)
        }
        Action::Publish {
            topic,
            data,
            dedup_key,
        } => publish::apply(conn, slot, topic, data, dedup_key, cause.hop).await,
        Action::SetState { state } => set_state::apply(conn, slot, state),
        Action::Close { code, reason } => return close::apply(conn, slot, code, reason, out),
        Action::Accept {} | Action::Reject { .. } => {
            conn.invalid_action(slot, "accept and reject apply only to an open event");
        }
        Action::Timer {
            name,
            every_ms,
            after_ms,
        } => timer::set(conn, slot, name, every_ms, after_ms),
        Action::CancelTimer { name } => timer::cancel(conn, slot, &name),
        Action::Buffer { sink, data } => buffer::apply(conn, slot, &sink, &data),
    }
    ControlFlow::Continue(())
}

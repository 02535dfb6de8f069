//! `close`: the lambda ends the stream with its own code (4000-4999).

use std::ops::ControlFlow;

use switchboard_protocol::CloseReason;

use crate::stream::{Connection, Ending, Out};

pub(super) fn apply(
    conn: &mut Connection,
    slot: u32,
    code: u16,
    reason: String,
    out: &mut Vec<Out>,
) -> ControlFlow<()> {
    let text = if reason.is_empty() {
        CloseReason::Lambda.as_str().to_owned()
    } else {
        reason
    };
    conn.close_stream(
        slot,
        Ending {
            reason: CloseReason::Lambda,
            code,
            text,
        },
        out,
    );
    ControlFlow::Break(())
}

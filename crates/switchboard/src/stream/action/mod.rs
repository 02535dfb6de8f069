//! Lambda actions, one file per kind: adding an action is one file and one
//! match arm. Each applies to one stream, in the order the lambda gave; a
//! `close` event's answer, which comes once the stream is gone, goes through
//! the same `publish` and `buffer` code ([`apply_detached`]).

mod buffer;
mod close;
mod publish;
mod push;
mod set_state;
mod subscribe;
mod timer;

use std::ops::ControlFlow;
use std::sync::Arc;

use switchboard_protocol::lambda::{Action, EventResult};
use switchboard_protocol::AppName;
use tokio_util::task::TaskTracker;

use super::{Connection, CursorText, Out};
use crate::broker::Broker;
use crate::gateway::Sinks;
use crate::ops::metrics::AppStats;

/// The stream an action is for, as `publish` and `buffer` need it: enough
/// to count and log, without the stream's connection.
pub struct Origin<'a> {
    pub app: &'a AppName,
    pub stats: &'a AppStats,
    pub stream_id: &'a str,
}

impl Origin<'_> {
    /// Skips an action: counted in `invalid_actions` and logged.
    pub fn invalid(&self, why: &str) {
        self.stats.invalid_actions.inc();
        tracing::warn!(app = %self.app, stream = %self.stream_id, error = why, "lambda action skipped");
    }
}

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

/// What a `close` event's answer needs of the node: the stream is gone.
pub struct Node<'a> {
    pub broker: &'a Arc<dyn Broker>,
    pub sinks: &'a Sinks,
    pub max_publish_hops: u8,
    /// The tracker the drain waits on: the publishes run on it.
    pub tracker: &'a TaskTracker,
}

/// Applies a `close` event's answer for stream `stream_id` of `app`. Of
/// its actions only `publish` and `buffer` apply (the others are ignored),
/// through the same code as a live stream's. The publishes go out in order
/// on `node.tracker`, so the drain waits for them before the process ends.
pub fn apply_detached(
    app: &AppName,
    stats: &Arc<AppStats>,
    stream_id: String,
    result: EventResult,
    node: &Node<'_>,
) {
    let origin = Origin {
        app,
        stats,
        stream_id: &stream_id,
    };
    let mut publications = Vec::new();
    for action in result {
        match action {
            Ok(Action::Publish {
                topic,
                data,
                dedup_key,
            }) => {
                // A close event answers no message: hop 0.
                let max = node.max_publish_hops;
                publications.extend(publish::prepare(&origin, topic, data, dedup_key, 0, max));
            }
            Ok(Action::Buffer { sink, data }) => buffer::append(&origin, node.sinks, &sink, &data),
            Ok(_) => {}
            Err(e) => origin.invalid(&e.to_string()),
        }
    }
    if publications.is_empty() {
        return;
    }
    let (app, stats, broker) = (app.clone(), stats.clone(), node.broker.clone());
    node.tracker.spawn(async move {
        let origin = Origin {
            app: &app,
            stats: &stats,
            stream_id: &stream_id,
        };
        for p in publications {
            publish::send(&origin, &*broker, p).await;
        }
    });
}

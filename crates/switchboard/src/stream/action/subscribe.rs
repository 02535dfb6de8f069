//! `subscribe` and `unsubscribe`.

use switchboard_protocol::lambda::{BatchSpec, Dedup, Deliver, RateLimit};
use switchboard_protocol::Topic;
use tokio::time::Duration;

use crate::stream::subscription::Options;
use crate::stream::Connection;

pub(super) async fn subscribe(
    conn: &mut Connection,
    slot: u32,
    topic: Topic,
    deliver: Option<Deliver>,
    rate_limit: Option<RateLimit>,
    dedup: Option<Dedup>,
    batch: Option<BatchSpec>,
) {
    if let Some(why) = conn.subscribe_refusal(slot, &topic) {
        conn.invalid_action(slot, &why);
        return;
    }
    let options = Options {
        rate_limit,
        dedup_window: dedup.map(|d| Duration::from_millis(d.window_ms)),
        batch,
    };
    conn.subscribe(slot, topic, deliver.unwrap_or_default(), options)
        .await;
}

pub(super) fn unsubscribe(conn: &mut Connection, slot: u32, topic: &Topic) {
    conn.unsubscribe(slot, topic);
}

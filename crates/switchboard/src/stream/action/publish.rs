//! `publish`: a message to a topic, through the broker like any publisher's.

use serde_json::value::RawValue;
use switchboard_protocol::{publish, Topic};

use crate::stream::Connection;

pub(super) async fn apply(
    conn: &mut Connection,
    slot: u32,
    topic: Topic,
    data: Box<RawValue>,
    dedup_key: Option<String>,
) {
    let publication = match publish::validate(topic.as_str(), data, dedup_key) {
        Ok(p) => p,
        Err(e) => return conn.invalid_action(slot, &e.to_string()),
    };
    if let Some(s) = conn.streams.get(&slot) {
        s.app.stats.publishes.inc();
    }
    if let Err(e) = conn.gw.broker.publish(vec![publication]).await {
        conn.invalid_action(slot, &e.to_string());
    }
}

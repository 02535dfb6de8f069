//! `publish`: a message to a topic, through the broker like any publisher's.
//! It carries one hop more than the message whose event it answers, so a
//! lambda that publishes to a topic it follows stops at
//! `limits.max_publish_hops` instead of looping forever (across nodes too:
//! every broker carries the hop).

use serde_json::value::RawValue;
use switchboard_protocol::{publish, Topic};

use crate::stream::Connection;

pub(super) async fn apply(
    conn: &mut Connection,
    slot: u32,
    topic: Topic,
    data: Box<RawValue>,
    dedup_key: Option<String>,
    cause_hop: u8,
) {
    let mut publication = match publish::validate(topic.as_str(), data, dedup_key) {
        Ok(p) => p,
        Err(e) => return conn.invalid_action(slot, &e.to_string()),
    };
    let max = conn.gw.config.limits.max_publish_hops;
    match cause_hop.checked_add(1).filter(|hop| *hop <= max) {
        Some(hop) => publication.hop = hop,
        None => {
            if let Some(s) = conn.streams.get(&slot) {
                s.app.stats.publish_hops_exceeded.inc();
            }
            return conn.invalid_action(
                slot,
                &format!(
                    "publish {topic}: the message would pass {max} lambda publishes \
                     (limits.max_publish_hops): a publish loop"
                ),
            );
        }
    }
    if let Some(s) = conn.streams.get(&slot) {
        s.app.stats.publishes.inc();
    }
    if let Err(e) = conn.gw.broker.publish(vec![publication]).await {
        conn.invalid_action(slot, &e.to_string());
    }
}

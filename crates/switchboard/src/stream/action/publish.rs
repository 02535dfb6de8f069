//! `publish`: a message to a topic, through the broker like any publisher's.
//! It carries one hop more than the message whose event it answers, so a
//! lambda that publishes to a topic it follows stops at
//! `limits.max_publish_hops` instead of looping forever (across nodes too:
//! every broker carries the hop).

use serde_json::value::RawValue;
use switchboard_protocol::publish::{self, Publication};
use switchboard_protocol::Topic;

use super::Origin;
use crate::broker::Broker;
use crate::stream::Connection;

pub(super) async fn apply(
    conn: &mut Connection,
    slot: u32,
    topic: Topic,
    data: Box<RawValue>,
    dedup_key: Option<String>,
    cause_hop: u8,
) {
    let Some(s) = conn.streams.get(&slot) else {
        return;
    };
    let origin = s.origin();
    let max = conn.gw.config.limits.max_publish_hops;
    if let Some(p) = prepare(&origin, topic, data, dedup_key, cause_hop, max) {
        send(&origin, &*conn.gw.broker, p).await;
    }
}

/// Checks a lambda's publish and gives it its hop, one more than
/// `cause_hop`'s. None: it is skipped, counted as invalid (and, past
/// `max_hops`, in `publish_hops_exceeded`).
pub fn prepare(
    origin: &Origin<'_>,
    topic: Topic,
    data: Box<RawValue>,
    dedup_key: Option<String>,
    cause_hop: u8,
    max_hops: u8,
) -> Option<Publication> {
    let mut publication = match publish::validate(topic.as_str(), data, dedup_key) {
        Ok(p) => p,
        Err(e) => {
            origin.invalid(&e.to_string());
            return None;
        }
    };
    match cause_hop.checked_add(1).filter(|hop| *hop <= max_hops) {
        Some(hop) => publication.hop = hop,
        None => {
            origin.stats.publish_hops_exceeded.inc();
            origin.invalid(&format!(
                "publish {topic}: the message would pass {max_hops} lambda publishes \
                 (limits.max_publish_hops): a publish loop"
            ));
            return None;
        }
    }
    Some(publication)
}

/// Publishes a prepared publish through the broker; a refusal counts as invalid.
pub async fn send(origin: &Origin<'_>, broker: &dyn Broker, publication: Publication) {
    origin.stats.publishes.inc();
    if let Err(e) = broker.publish(vec![publication]).await {
        origin.invalid(&e.to_string());
    }
}

//! `subscribe` and `unsubscribe`.

use switchboard_protocol::lambda::Deliver;
use switchboard_protocol::Topic;

use crate::stream::Connection;

pub(super) async fn subscribe(
    conn: &mut Connection,
    slot: u32,
    topic: Topic,
    deliver: Option<Deliver>,
) {
    conn.subscribe(slot, topic, deliver.unwrap_or_default())
        .await;
}

pub(super) fn unsubscribe(conn: &mut Connection, slot: u32, topic: &Topic) {
    conn.unsubscribe(slot, topic);
}

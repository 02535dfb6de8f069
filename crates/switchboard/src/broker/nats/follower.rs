//! This node's interest in a topic: its live subscription and one follower
//! task per topic that delivers in sequence order and catches up from
//! history after any gap (a reconnection, a lost store, a missed message).

use std::sync::Arc;

use async_nats::Subscriber;
use futures_util::StreamExt;
use switchboard_protocol::Topic;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::connection::check_stream;
use super::{message, subjects, unavailable, Follow, NatsCore, Session, CONFIRM_TIMEOUT};
use crate::broker::BrokerError;
use crate::ops::supervise::{supervise as supervised, Kept, TaskKind};

/// Declares this node's interest in `topic`: subscribes to its live subject
/// and starts its follower; resolves once the server has the subscription.
pub(super) async fn watch(shared: &Arc<NatsCore>, topic: Topic) -> Result<(), BrokerError> {
    let ready = shared.is_ready();
    // The position before subscribing: the follower catches up from it after
    // a reconnection, and spots messages that fell between read and subscribe.
    let base = if ready {
        shared.last_seq(&topic).await.ok()
    } else {
        None
    };
    let sub = shared
        .client
        .subscribe(subjects::live_subject(&topic))
        .await
        .map_err(unavailable)?;
    let stop = CancellationToken::new();
    let confirmed = watch::channel(false).0;
    {
        let mut topics = shared.topics.lock();
        if shared.router.subscriber_count(&topic) == 0 {
            // The last local stream left while this watch was on its way.
            return Ok(());
        }
        let follow = Follow {
            stop: stop.clone(),
            confirmed: confirmed.clone(),
        };
        if let Some(old) = topics.insert(topic.clone(), follow) {
            old.stop.cancel();
        }
    }
    let kept = Kept::new(Followed {
        sub,
        last: base,
        store: None,
    });
    let run = {
        let shared = shared.clone();
        move || follow(shared.clone(), topic.clone(), kept.clone(), stop.clone())
    };
    tokio::spawn(supervised(TaskKind::BrokerFollower, run));
    if !ready {
        // Subscribed on reconnection; the follower then sends `gap`.
        return Err(unavailable("NATS is not connected"));
    }
    match tokio::time::timeout(CONFIRM_TIMEOUT, shared.client.flush()).await {
        Ok(Ok(())) => {
            confirmed.send_replace(true);
            Ok(())
        }
        Ok(Err(e)) => Err(unavailable(e)),
        Err(e) => Err(unavailable(e)),
    }
}

/// One topic's follower: delivers its live messages in sequence order, and
/// catches up from history after a reconnection or wherever the republished
/// `Nats-Last-Sequence` shows a message it did not get.
struct Follower {
    shared: Arc<NatsCore>,
    topic: Topic,
    /// The newest sequence delivered (or the position when interest began);
    /// None: unknown (interest declared while disconnected).
    last: Option<u64>,
    session: watch::Receiver<Session>,
    /// The store generation `last` belongs to.
    store: u64,
}

/// What a follower keeps across restarts: its subscription and position.
struct Followed {
    sub: Subscriber,
    last: Option<u64>,
    /// None until the first run reads the session's store.
    store: Option<u64>,
}

async fn follow(
    shared: Arc<NatsCore>,
    topic: Topic,
    kept: Kept<Followed>,
    stop: CancellationToken,
) {
    let mut kept = kept.hold().await;
    let Followed { sub, last, store } = &mut *kept;
    let mut session = shared.session.subscribe();
    let now = session.borrow_and_update().store;
    let mut f = Follower {
        shared,
        topic,
        last: *last,
        session,
        store: *store.get_or_insert(now),
    };
    if f.store != now {
        // The store changed while this follower was down.
        f.on_session().await;
    }
    loop {
        *last = f.last;
        *store = Some(f.store);
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            changed = f.session.changed() => {
                if changed.is_err() {
                    break;
                }
                f.on_session().await;
            }
            msg = sub.next() => {
                let Some(msg) = msg else { break };
                f.on_live(msg).await;
            }
        }
    }
    let _ = sub.unsubscribe().await;
}

fn header_u64(msg: &async_nats::Message, name: &str) -> Option<u64> {
    msg.headers.as_ref()?.get(name)?.as_str().parse().ok()
}

impl Follower {
    /// A (re)connection: catch up; after a lost store, `gap` and start over.
    async fn on_session(&mut self) {
        let now: Session = *self.session.borrow_and_update();
        if now.store != self.store {
            self.new_store(now.store);
        }
        self.catch_up().await;
    }

    /// What this node had not delivered from the old store is lost; the new
    /// store's ids are larger than the old ones, so streams take them all.
    fn new_store(&mut self, store: u64) {
        self.store = store;
        self.shared.router.deliver_gap(&self.topic);
        self.last = Some(0);
    }

    async fn on_live(&mut self, msg: async_nats::Message) {
        let Some(seq) = header_u64(&msg, "Nats-Sequence") else {
            return;
        };
        let prev = header_u64(&msg, "Nats-Last-Sequence").unwrap_or(0);
        match self.last {
            Some(l) if seq <= l => return,
            Some(l) if prev != l => {
                // Messages between what we delivered and this one did not come.
                self.catch_up().await;
                if self.last.is_some_and(|l| seq <= l) {
                    return;
                }
                self.shared.router.deliver_gap(&self.topic);
            }
            Some(_) => {}
            None => self.shared.router.deliver_gap(&self.topic),
        }
        self.last = Some(seq);
        let epoch = self.shared.epoch.arc();
        if let Some(m) = message(&self.topic, seq, &msg.payload, msg.headers.as_ref(), &epoch) {
            self.shared.router.deliver(&m);
        }
    }

    /// Delivers, in order, what history holds after `last`; `gap` first if it
    /// no longer reaches back (or this node never knew where it was).
    async fn catch_up(&mut self) {
        let Some(after) = self.last else {
            self.shared.router.deliver_gap(&self.topic);
            if let Ok(seq) = self.shared.last_seq(&self.topic).await {
                self.last = Some(seq);
            }
            return;
        };
        let mut history = match self.shared.history_after(&self.topic, after).await {
            Ok(h) => h,
            Err(e) => {
                // Lost again: the next session retries.
                tracing::debug!(topic = %self.topic, error = %e, "catch-up postponed");
                return;
            }
        };
        if history.truncated && after > 0 && check_stream(&self.shared).await {
            // Not an old cursor: the stream was recreated. Every message
            // from here on carries the new epoch.
            let store = self.session.borrow_and_update().store;
            self.new_store(store);
            history = match self.shared.history_after(&self.topic, 0).await {
                Ok(h) => h,
                Err(_) => return,
            };
        } else if history.truncated {
            self.shared.router.deliver_gap(&self.topic);
        }
        for m in history.messages {
            let Some((seq, _)) = m.order else { continue };
            if seq > self.last.unwrap_or(0) {
                self.last = Some(seq);
                self.shared.router.deliver(&m);
            }
        }
    }
}

//! One stream's subscription to one topic: its position (for the cursor),
//! what it has seen (no duplicates at a resume seam), and the capabilities
//! it applies to each message in order: dedup, rate limit, then delivery
//! (direct, or to the lambda one by one or in batches).

use std::sync::Arc;

use switchboard_protocol::lambda::{BatchSpec, Deliver, RateLimit};
use switchboard_protocol::{cursor, Topic};
use tokio::time::{Duration, Instant};

use crate::broker::Message;
use crate::capability::batch::Batcher;
use crate::capability::dedup::Dedup;
use crate::capability::rate_limit::RateLimiter;
use crate::capability::timer_shards::TimerToken;

pub(super) struct Subscription {
    pub topic: Topic,
    pub deliver: Deliver,
    /// Id of the last message of this topic the stream has passed.
    pub position: Arc<str>,
    /// The newest message taken in (delivered or queued for the lambda):
    /// messages at or before it are not taken again (replay/live overlap).
    seen: Option<(u64, u64)>,
    // Boxed: most subscriptions use none of them, and an idle stream's
    // memory is a tracked figure.
    rate: Option<Box<RateLimiter>>,
    dedup: Option<Box<Dedup>>,
    pub batch: Option<Box<Batcher>>,
    /// Armed while a batch waits for its `max_delay_ms`.
    pub batch_timer: Option<Arc<TimerToken>>,
}

/// What a subscription does with a message.
pub(super) enum Verdict {
    /// Already seen (replay overlap): nothing at all.
    Seen,
    DedupDrop,
    RateDrop,
    Deliver,
}

/// A subscription's options from the `subscribe` action.
#[derive(Default, Clone, Copy)]
pub(super) struct Options {
    pub rate_limit: Option<RateLimit>,
    pub dedup_window: Option<Duration>,
    pub batch: Option<BatchSpec>,
}

impl Subscription {
    pub fn new(topic: Topic, deliver: Deliver, position: Arc<str>, options: Options) -> Self {
        let mut s = Self {
            seen: cursor::id_order(&position),
            topic,
            deliver,
            position,
            rate: None,
            dedup: None,
            batch: None,
            batch_timer: None,
        };
        s.configure(deliver, options);
        s
    }

    /// A repeated `subscribe` replaces the options and starts their state afresh.
    pub fn configure(&mut self, deliver: Deliver, o: Options) {
        self.deliver = deliver;
        self.rate = o
            .rate_limit
            .map(|r| Box::new(RateLimiter::new(r.per_second, r.burst)));
        self.dedup = o.dedup_window.map(|w| Box::new(Dedup::new(w)));
        // Batching applies to lambda delivery only.
        self.batch = match (deliver, o.batch) {
            (Deliver::Lambda, Some(b)) => Some(Box::new(Batcher::new(
                b.max_messages,
                Duration::from_millis(b.max_delay_ms),
            ))),
            _ => None,
        };
        self.batch_timer = None;
    }

    /// Runs the message through the subscription's filters, in order.
    pub fn admit(&mut self, msg: &Message, now: Instant) -> Verdict {
        if let (Some(m), Some(seen)) = (msg.order, self.seen) {
            if m <= seen {
                return Verdict::Seen;
            }
        }
        if msg.order.is_some() {
            self.seen = msg.order;
        }
        if let Some(d) = &mut self.dedup {
            if !d.check(msg.dedup_hash(), now) {
                return Verdict::DedupDrop;
            }
        }
        if let Some(r) = &mut self.rate {
            if !r.check(now) {
                return Verdict::RateDrop;
            }
        }
        Verdict::Deliver
    }

    /// Resume from `id`: the cursor's position, and nothing before it again.
    pub fn resume_from(&mut self, id: &str) {
        self.seen = cursor::id_order(id);
        self.position = Arc::from(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn msg(id: u64, data: &str) -> Message {
        Message::new(
            Topic::new("t").unwrap(),
            Arc::from(id.to_string()),
            RawValue::from_string(data.into()).unwrap(),
            Arc::from("e"),
            None,
        )
    }

    #[test]
    fn seen_then_dedup_then_rate() {
        let now = Instant::now();
        let o = Options {
            rate_limit: Some(RateLimit {
                per_second: 1.0,
                burst: 2,
            }),
            dedup_window: Some(Duration::from_secs(60)),
            batch: None,
        };
        let mut s = Subscription::new(Topic::new("t").unwrap(), Deliver::Direct, Arc::from("3"), o);
        assert!(matches!(s.admit(&msg(3, "1"), now), Verdict::Seen));
        assert!(matches!(s.admit(&msg(4, "1"), now), Verdict::Deliver));
        assert!(
            matches!(s.admit(&msg(5, "1"), now), Verdict::DedupDrop),
            "same data"
        );
        assert!(matches!(s.admit(&msg(6, "2"), now), Verdict::Deliver));
        assert!(
            matches!(s.admit(&msg(7, "3"), now), Verdict::RateDrop),
            "burst of 2 used"
        );
        assert!(
            matches!(s.admit(&msg(7, "4"), now), Verdict::Seen),
            "7 was taken in already"
        );
    }

    #[test]
    fn batch_only_for_lambda_delivery() {
        let o = Options {
            batch: Some(BatchSpec {
                max_messages: 5,
                max_delay_ms: 10,
            }),
            ..Options::default()
        };
        let t = Topic::new("t").unwrap();
        assert!(
            Subscription::new(t.clone(), Deliver::Lambda, Arc::from("0"), o)
                .batch
                .is_some()
        );
        assert!(Subscription::new(t, Deliver::Direct, Arc::from("0"), o)
            .batch
            .is_none());
    }
}

//! Per-connection and per-stream bounds: opens per second, the topics a
//! stream may follow (the app's patterns, and how many), the bytes of
//! `send` data waiting for lambdas, and slots that never land on a live
//! stream. Over a bound, an open is rejected with the limit's status and
//! a reason naming it; a lambda action is skipped as invalid; a client
//! that sends faster than its lambda answers is no longer read (TCP
//! backpressure), nothing dropped.

use std::collections::HashSet;

use switchboard_protocol::lambda::Action;
use switchboard_protocol::Topic;
use tokio::time::Instant;

use super::Connection;
use crate::capability::rate_limit::RateLimiter;
use crate::gateway::App;

/// What a queued `send` costs beyond its data: its place in the queues.
pub(super) const SEND_OVERHEAD: usize = 64;

/// Reasons of rejected opens (PROTOCOL.md "Edge rules"), each naming its limit.
pub(super) const TOO_MANY_TOPICS: &str = "too_many_topics";
pub(super) const OPEN_RATE: &str = "open_rate";
pub(super) const FORBIDDEN_TOPIC: &str = "forbidden_topic";

/// The connection's open rate: `per_second` opens a second, as many at
/// once (the subscriptions' GCRA limiter, with a burst of one second's worth).
pub(super) fn open_rate(per_second: u32) -> RateLimiter {
    RateLimiter::new(f64::from(per_second), per_second)
}

/// The slot for a new stream: the next one that no live stream holds.
/// Terminates: a connection holds far fewer streams than there are slots.
pub(super) fn next_free_slot(next: &mut u32, live: impl Fn(u32) -> bool) -> u32 {
    loop {
        let slot = *next;
        *next = next.wrapping_add(1);
        if !live(slot) {
            return slot;
        }
    }
}

/// Why a stream of `app` may not follow `topics` (status, reason), if so.
pub(super) fn refuse_topics(app: &App, limit: usize, topics: &[Topic]) -> Option<(u16, String)> {
    if topics.len() > limit {
        return Some((400, TOO_MANY_TOPICS.into()));
    }
    if !topics.iter().all(|t| allows(app, t)) {
        return Some((403, FORBIDDEN_TOPIC.into()));
    }
    None
}

/// The most distinct topics the subscriptions and unsubscriptions in
/// `actions` would have a new stream follow at once, counting only topics
/// `allowed` (the others are skipped as invalid).
pub(super) fn peak_topics<'a, E: 'a>(
    actions: impl IntoIterator<Item = &'a Result<Action, E>>,
    allowed: impl Fn(&Topic) -> bool,
) -> usize {
    let mut now: HashSet<&str> = HashSet::new();
    let mut peak = 0;
    for a in actions {
        match a {
            Ok(Action::Subscribe { topic, .. }) if allowed(topic) => {
                now.insert(topic.as_str());
                peak = peak.max(now.len());
            }
            Ok(Action::Unsubscribe { topic }) => {
                now.remove(topic.as_str());
            }
            _ => {}
        }
    }
    peak
}

impl Connection {
    /// Whether the client's socket is not to be read for now: its `send`
    /// data waiting for lambdas, or its events in dispatchers, are at their
    /// bound. It is read again as the lambdas answer.
    pub fn reads_paused(&self) -> bool {
        self.send_bytes >= self.gw.config.limits.max_queued_send_bytes || self.outbox.jobs_full()
    }

    /// Takes one open from the connection's rate.
    pub(super) fn open_allowed(&mut self) -> bool {
        self.opens.check(Instant::now())
    }

    /// Counts a queued `send` of `len` bytes against the stream and connection.
    pub(super) fn charge_send(&mut self, slot: u32, len: usize) {
        if let Some(s) = self.streams.get_mut(&slot) {
            s.send_bytes += len + SEND_OVERHEAD;
            self.send_bytes += len + SEND_OVERHEAD;
        }
    }

    /// A `send` of `len` bytes was answered (or failed): it no longer counts.
    pub(super) fn release_send(&mut self, slot: u32, len: usize) {
        if let Some(s) = self.streams.get_mut(&slot) {
            let cost = (len + SEND_OVERHEAD).min(s.send_bytes);
            s.send_bytes -= cost;
            self.send_bytes = self.send_bytes.saturating_sub(cost);
        }
    }

    /// Why a lambda's `subscribe` to `topic` is invalid for the stream, if it is.
    pub(super) fn subscribe_refusal(&self, slot: u32, topic: &Topic) -> Option<String> {
        let s = self.streams.get(&slot)?;
        if !allows(&s.app, topic) {
            return Some(format!(
                "subscribe {topic}: outside app {}'s topics",
                s.app.name
            ));
        }
        let limit = self.gw.config.limits.max_topics_per_stream;
        if s.subs.len() >= limit && !s.subs.iter().any(|sub| sub.topic == *topic) {
            return Some(format!(
                "subscribe {topic}: the stream follows {limit} topics (limits.max_topics_per_stream)"
            ));
        }
        None
    }
}

/// Whether `app` lets its streams follow `topic`.
pub(super) fn allows(app: &App, topic: &Topic) -> bool {
    app.topics.as_ref().is_none_or(|p| p.allows(topic.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Duration;

    #[test]
    fn slots_skip_live_streams_when_they_wrap() {
        let live = [u32::MAX, 0, 1, 5];
        let mut next = u32::MAX;
        assert_eq!(next_free_slot(&mut next, |s| live.contains(&s)), 2);
        assert_eq!(next, 3);
        assert_eq!(next_free_slot(&mut next, |s| live.contains(&s)), 3);
        assert_eq!(next_free_slot(&mut next, |s| live.contains(&s)), 4);
        assert_eq!(next_free_slot(&mut next, |s| live.contains(&s)), 6);
    }

    #[test]
    fn the_open_rate_refills_over_time_up_to_its_burst() {
        let mut r = open_rate(5);
        let t0 = Instant::now();
        assert_eq!((0..10).filter(|_| r.check(t0)).count(), 5);
        // 400 ms later: two more.
        let t1 = t0 + Duration::from_millis(400);
        assert_eq!((0..10).filter(|_| r.check(t1)).count(), 2);
        // A long pause refills to the burst only.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| r.check(t2)).count(), 5);
    }

    #[test]
    fn peak_topics_follows_subscribes_and_unsubscribes() {
        let t = |s: &str| Topic::new(s).unwrap();
        let sub = |s: &str| -> Result<Action, ()> {
            Ok(Action::Subscribe {
                topic: t(s),
                deliver: None,
                rate_limit: None,
                dedup: None,
                batch: None,
            })
        };
        let unsub = |s: &str| -> Result<Action, ()> { Ok(Action::Unsubscribe { topic: t(s) }) };
        let actions = [
            sub("a"),
            sub("b"),
            sub("a"),
            unsub("a"),
            sub("c"),
            sub("x/1"),
        ];
        assert_eq!(peak_topics(&actions, |_| true), 3);
        assert_eq!(peak_topics(&actions, |t| !t.as_str().starts_with("x/")), 2);
    }
}

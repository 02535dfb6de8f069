//! How much history topics keep: the bounds per topic (a default, and
//! overrides per topic prefix, longest prefix first) and the node-wide
//! totals. Every broker reads its topics' bounds from here.

use tokio::time::Duration;

/// How much history one topic keeps (the smallest bound wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    pub max_messages: usize,
    /// Bytes of the messages' `data`.
    pub max_bytes: usize,
    pub max_age: Duration,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self {
            max_messages: 1_000,
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(600),
        }
    }
}

/// The history bounds of every topic, and of the node.
#[derive(Debug, Clone)]
pub struct HistoryPolicy {
    /// Topics that match no prefix.
    pub default: HistoryLimits,
    /// (prefix, bounds), longest prefix first: the first that matches wins.
    prefixes: Vec<(String, HistoryLimits)>,
    /// The embedded broker's history over all topics, bytes; past it the
    /// oldest messages of the node go first.
    pub max_total_bytes: usize,
    /// The JetStream stream's `max_bytes`.
    pub nats_max_bytes: u64,
}

/// Default node total of the embedded broker's history: 256 MiB.
pub const DEFAULT_MAX_TOTAL_BYTES: usize = 256 << 20;
/// Default `max_bytes` of the JetStream history stream: 1 GiB.
pub const DEFAULT_NATS_MAX_BYTES: u64 = 1 << 30;

impl Default for HistoryPolicy {
    fn default() -> Self {
        Self::new(
            HistoryLimits::default(),
            Vec::new(),
            DEFAULT_MAX_TOTAL_BYTES,
            DEFAULT_NATS_MAX_BYTES,
        )
    }
}

impl HistoryPolicy {
    /// Prefixes are matched longest first, whatever their order here.
    pub fn new(
        default: HistoryLimits,
        mut prefixes: Vec<(String, HistoryLimits)>,
        max_total_bytes: usize,
        nats_max_bytes: u64,
    ) -> Self {
        prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Self {
            default,
            prefixes,
            max_total_bytes,
            nats_max_bytes,
        }
    }

    /// The bounds of `topic`: those of the longest matching prefix, else the default.
    pub fn limits_for(&self, topic: &str) -> HistoryLimits {
        self.prefixes
            .iter()
            .find(|(p, _)| topic.starts_with(p.as_str()))
            .map_or(self.default, |(_, l)| *l)
    }

    /// The largest of each bound over every topic: what a store with one
    /// setting for all topics (a JetStream stream) must keep so that every
    /// topic's own bounds can be applied when its history is read.
    pub fn widest(&self) -> HistoryLimits {
        self.prefixes
            .iter()
            .map(|(_, l)| *l)
            .fold(self.default, |w, l| HistoryLimits {
                max_messages: w.max_messages.max(l.max_messages),
                max_bytes: w.max_bytes.max(l.max_bytes),
                max_age: w.max_age.max(l.max_age),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(n: usize) -> HistoryLimits {
        HistoryLimits {
            max_messages: n,
            max_bytes: n * 10,
            max_age: Duration::from_secs(n as u64),
        }
    }

    #[test]
    fn the_longest_prefix_wins_and_the_rest_get_the_default() {
        let p = HistoryPolicy::new(
            limits(5),
            vec![
                ("scores/".into(), limits(100)),
                ("scores/live/".into(), limits(2)),
                ("s".into(), limits(7)),
            ],
            1 << 20,
            1 << 30,
        );
        assert_eq!(p.limits_for("scores/live/1"), limits(2));
        assert_eq!(p.limits_for("scores/1"), limits(100));
        assert_eq!(p.limits_for("sport"), limits(7));
        assert_eq!(p.limits_for("news"), limits(5));
        assert_eq!(p.widest().max_messages, 100);
        assert_eq!(p.widest().max_age, Duration::from_secs(100));
        assert_eq!(HistoryPolicy::default().widest(), HistoryLimits::default());
    }
}

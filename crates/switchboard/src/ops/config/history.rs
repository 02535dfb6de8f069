//! The `[history]` table: how much history each topic keeps (a default and
//! `[[history.prefixes]]` overrides), the embedded broker's node total and
//! the JetStream stream's size (docs/security.md "Node-wide memory bounds").

use std::ops::RangeInclusive;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use switchboard_protocol::Topic;

use crate::broker::history::{
    HistoryLimits, HistoryPolicy, DEFAULT_MAX_TOTAL_BYTES, DEFAULT_NATS_MAX_BYTES,
};
use crate::cli::HistoryArgs;

/// Messages a topic may keep.
const MESSAGES: RangeInclusive<usize> = 1..=100_000;
/// Bytes of `data` a topic may keep (64 MiB).
const BYTES: RangeInclusive<usize> = 1..=64 << 20;
/// Age of a topic's messages, ms (24 h).
const AGE_MS: RangeInclusive<u64> = 1..=86_400_000;
/// The embedded broker's node total (1 MiB to 1 TiB).
const TOTAL_BYTES: RangeInclusive<usize> = 1 << 20..=1 << 40;
/// The JetStream stream's `max_bytes` (1 MiB up).
const NATS_BYTES: RangeInclusive<u64> = 1 << 20..=i64::MAX as u64;
/// `[[history.prefixes]]` entries at most (each publish looks through them).
const MAX_PREFIXES: usize = 256;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHistory {
    /// Messages each topic keeps. Default 1000.
    pub max_messages: Option<usize>,
    /// Bytes of `data` each topic keeps. Default 1048576 (1 MiB).
    pub max_bytes: Option<usize>,
    /// Oldest message each topic keeps, ms. Default 600000 (10 min).
    pub max_age_ms: Option<u64>,
    /// Embedded broker: bytes of history over every topic. Default 268435456 (256 MiB).
    pub max_total_bytes: Option<usize>,
    /// NATS: the JetStream history stream's `max_bytes`. Default 1073741824 (1 GiB).
    pub nats_max_bytes: Option<u64>,
    /// Bounds of the topics that start with a prefix; the longest prefix wins.
    #[serde(default)]
    pub prefixes: Vec<RawHistoryPrefix>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHistoryPrefix {
    pub prefix: String,
    /// Each unset bound is `[history]`'s.
    pub max_messages: Option<usize>,
    pub max_bytes: Option<usize>,
    pub max_age_ms: Option<u64>,
}

/// The file's `[history]` with the flags (and their env twins) over it.
pub fn policy(raw: RawHistory, args: &HistoryArgs) -> anyhow::Result<HistoryPolicy> {
    let d = HistoryLimits::default();
    let default = limits(
        "history",
        d,
        args.history_max_messages.or(raw.max_messages),
        args.history_max_bytes.or(raw.max_bytes),
        args.history_max_age_ms.or(raw.max_age_ms),
    )?;
    if raw.prefixes.len() > MAX_PREFIXES {
        bail!(
            "history.prefixes: at most {MAX_PREFIXES} entries, not {}",
            raw.prefixes.len()
        );
    }
    let mut prefixes: Vec<(String, HistoryLimits)> = Vec::with_capacity(raw.prefixes.len());
    for p in raw.prefixes {
        Topic::new(&p.prefix).with_context(|| {
            format!(
                "history.prefixes: prefix {:?} is not the start of a topic",
                p.prefix
            )
        })?;
        if prefixes.iter().any(|(q, _)| *q == p.prefix) {
            bail!("history.prefixes: prefix {:?} is given twice", p.prefix);
        }
        let what = format!("history.prefixes {:?}", p.prefix);
        let l = limits(&what, default, p.max_messages, p.max_bytes, p.max_age_ms)?;
        prefixes.push((p.prefix, l));
    }
    let max_total_bytes = within(
        "history.max_total_bytes",
        args.history_max_total_bytes.or(raw.max_total_bytes),
        DEFAULT_MAX_TOTAL_BYTES,
        TOTAL_BYTES,
    )?;
    let nats_max_bytes = within(
        "history.nats_max_bytes",
        args.history_nats_max_bytes.or(raw.nats_max_bytes),
        DEFAULT_NATS_MAX_BYTES,
        NATS_BYTES,
    )?;
    Ok(HistoryPolicy::new(
        default,
        prefixes,
        max_total_bytes,
        nats_max_bytes,
    ))
}

fn limits(
    what: &str,
    base: HistoryLimits,
    messages: Option<usize>,
    bytes: Option<usize>,
    age_ms: Option<u64>,
) -> anyhow::Result<HistoryLimits> {
    Ok(HistoryLimits {
        max_messages: within(
            &format!("{what}: max_messages"),
            messages,
            base.max_messages,
            MESSAGES,
        )?,
        max_bytes: within(&format!("{what}: max_bytes"), bytes, base.max_bytes, BYTES)?,
        max_age: Duration::from_millis(within(
            &format!("{what}: max_age_ms"),
            age_ms,
            base.max_age.as_millis() as u64,
            AGE_MS,
        )?),
    })
}

fn within<T: PartialOrd + Copy + std::fmt::Display>(
    key: &str,
    v: Option<T>,
    default: T,
    range: RangeInclusive<T>,
) -> anyhow::Result<T> {
    let v = v.unwrap_or(default);
    if !range.contains(&v) {
        bail!(
            "{key} must be between {} and {}, not {v}",
            range.start(),
            range.end()
        );
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str, args: &HistoryArgs) -> anyhow::Result<HistoryPolicy> {
        policy(toml::from_str(toml)?, args)
    }

    #[test]
    fn defaults_prefixes_and_flags() {
        let d = parse("", &HistoryArgs::default()).unwrap();
        assert_eq!(d.limits_for("any"), HistoryLimits::default());
        assert_eq!(d.max_total_bytes, 256 << 20);
        assert_eq!(d.nats_max_bytes, 1 << 30);
        let file = "max_messages = 50\nmax_total_bytes = 2097152\n\
                    [[prefixes]]\nprefix = \"scores/\"\nmax_messages = 100\nmax_bytes = 65536\nmax_age_ms = 60000\n\
                    [[prefixes]]\nprefix = \"chat/\"\nmax_age_ms = 1000\n";
        let args = HistoryArgs {
            history_max_total_bytes: Some(8 << 20),
            ..HistoryArgs::default()
        };
        let p = parse(file, &args).unwrap();
        assert_eq!(p.max_total_bytes, 8 << 20, "the flag wins");
        let s = p.limits_for("scores/1");
        assert_eq!(
            (s.max_messages, s.max_bytes, s.max_age),
            (100, 65536, Duration::from_secs(60))
        );
        let c = p.limits_for("chat/1");
        assert_eq!(
            (c.max_messages, c.max_bytes, c.max_age),
            (50, 1 << 20, Duration::from_secs(1)),
            "unset bounds are [history]'s"
        );
        assert_eq!(p.limits_for("news").max_messages, 50);
    }

    #[test]
    fn bad_values_are_refused() {
        let a = HistoryArgs::default();
        for bad in [
            "max_messages = 0",
            "max_messages = 100001",
            "max_bytes = 0",
            "max_bytes = 67108865",
            "max_age_ms = 0",
            "max_age_ms = 86400001",
            "max_total_bytes = 1000",
            "nats_max_bytes = 1000",
            "[[prefixes]]\nprefix = \"\"",
            "[[prefixes]]\nprefix = \"a b\"",
            "[[prefixes]]\nprefix = \"a\"\n[[prefixes]]\nprefix = \"a\"",
            "[[prefixes]]\nprefix = \"a\"\nmax_messages = 0",
            "[[prefixes]]\nprefix = \"a\"\nunknown = 1",
            "unknown = 1",
        ] {
            assert!(parse(bad, &a).is_err(), "{bad}");
        }
        let many: String = (0..=MAX_PREFIXES)
            .map(|i| format!("[[prefixes]]\nprefix = \"p{i}\"\n"))
            .collect();
        assert!(parse(&many, &a).is_err());
    }
}

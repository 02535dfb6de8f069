//! The range of every number a lambda's action may carry (PROTOCOL.md v1.1
//! "Edge rules"), in one place. A number out of range makes the action
//! invalid: it is skipped and counted, like any other invalid action.

use super::{Action, ActionError};

/// Longest `timer` interval, `every_ms` or `after_ms` (24 h).
pub const MAX_TIMER_MS: u64 = 86_400_000;
/// Longest `batch.max_delay_ms` (1 min). 0 is valid: a batch holds what arrived together.
pub const MAX_BATCH_DELAY_MS: u64 = 60_000;
/// Most `batch.max_messages`.
pub const MAX_BATCH_MESSAGES: u32 = 10_000;
/// Longest `dedup.window_ms` (1 h).
pub const MAX_DEDUP_WINDOW_MS: u64 = 3_600_000;
/// Highest `rate_limit.per_second`.
pub const MAX_RATE_PER_SECOND: f64 = 1_000_000.0;
/// Largest `rate_limit.burst`.
pub const MAX_RATE_BURST: u32 = 1_000_000;
/// Longest timer name (bytes).
pub const MAX_TIMER_NAME: usize = 128;

/// Checks the numbers (and timer names) of `a` against their ranges.
pub(super) fn check(a: &Action) -> Result<(), ActionError> {
    match a {
        Action::Timer {
            every_ms, after_ms, ..
        } => {
            let (field, ms) = match (every_ms, after_ms) {
                (Some(e), None) => ("every_ms", *e),
                (None, Some(a)) => ("after_ms", *a),
                _ => return Err(invalid("timer needs exactly one of every_ms, after_ms")),
            };
            timer_name(a)?;
            within(field, ms, 1, MAX_TIMER_MS)
        }
        Action::CancelTimer { .. } => timer_name(a),
        Action::Subscribe {
            rate_limit,
            dedup,
            batch,
            ..
        } => {
            if let Some(r) = rate_limit {
                // NaN fails both comparisons, so it is refused too.
                if !(r.per_second > 0.0 && r.per_second <= MAX_RATE_PER_SECOND) {
                    return Err(invalid(format!(
                        "rate_limit.per_second must be > 0 and at most {MAX_RATE_PER_SECOND}"
                    )));
                }
                within("rate_limit.burst", r.burst.into(), 1, MAX_RATE_BURST.into())?;
            }
            if let Some(d) = dedup {
                within("dedup.window_ms", d.window_ms, 1, MAX_DEDUP_WINDOW_MS)?;
            }
            if let Some(b) = batch {
                within(
                    "batch.max_messages",
                    b.max_messages.into(),
                    1,
                    MAX_BATCH_MESSAGES.into(),
                )?;
                within("batch.max_delay_ms", b.max_delay_ms, 0, MAX_BATCH_DELAY_MS)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn timer_name(a: &Action) -> Result<(), ActionError> {
    match a {
        Action::Timer { name, .. } | Action::CancelTimer { name }
            if name.is_empty() || name.len() > MAX_TIMER_NAME =>
        {
            Err(invalid(format!(
                "timer name must be 1-{MAX_TIMER_NAME} bytes"
            )))
        }
        _ => Ok(()),
    }
}

fn within(field: &str, v: u64, min: u64, max: u64) -> Result<(), ActionError> {
    if (min..=max).contains(&v) {
        return Ok(());
    }
    Err(invalid(format!("{field} {v} is not {min}-{max}")))
}

fn invalid(why: impl Into<String>) -> ActionError {
    ActionError(why.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn parse(s: &str) -> Result<Action, ActionError> {
        Action::parse(&serde_json::from_str::<Box<RawValue>>(s).unwrap())
    }

    fn timer(field: &str, v: &str) -> Result<Action, ActionError> {
        parse(&format!(r#"{{"type":"timer","name":"t","{field}":{v}}}"#))
    }

    fn subscribe(option: &str) -> Result<Action, ActionError> {
        parse(&format!(r#"{{"type":"subscribe","topic":"a","{option}}}"#))
    }

    /// Values that no field takes: negative, fractional, too big for a
    /// u64, out of f64's range, not numbers.
    const NEVER: [&str; 6] = [
        "-1",
        "1.5",
        "18446744073709551616",
        "1e20",
        "1e999",
        "\"5\"",
    ];

    #[test]
    fn timer_intervals_at_their_bounds() {
        for field in ["every_ms", "after_ms"] {
            assert!(timer(field, "86400000").is_ok(), "{field} max");
            assert!(timer(field, "1").is_ok(), "{field} min");
            for bad in ["86400001", "0", "18446744073709551615"] {
                assert!(timer(field, bad).is_err(), "{field} {bad}");
            }
            for bad in NEVER {
                assert!(timer(field, bad).is_err(), "{field} {bad}");
            }
        }
    }

    #[test]
    fn batch_at_its_bounds() {
        let b = |m: &str, d: &str| {
            subscribe(&format!(
                r#"batch":{{"max_messages":{m},"max_delay_ms":{d}}}"#
            ))
        };
        assert!(b("10000", "60000").is_ok());
        assert!(b("1", "0").is_ok(), "no delay: what arrived together");
        assert!(b("10001", "10").is_err());
        assert!(b("0", "10").is_err());
        assert!(b("4294967295", "10").is_err());
        assert!(b("10", "60001").is_err());
        assert!(b("10", "18446744073709551615").is_err());
        for bad in NEVER {
            assert!(b(bad, "10").is_err(), "max_messages {bad}");
            assert!(b("10", bad).is_err(), "max_delay_ms {bad}");
        }
    }

    #[test]
    fn dedup_at_its_bounds() {
        let d = |w: &str| subscribe(&format!(r#"dedup":{{"window_ms":{w}}}"#));
        assert!(d("3600000").is_ok());
        assert!(d("1").is_ok());
        assert!(d("3600001").is_err());
        assert!(d("0").is_err(), "a zero window dedups nothing: a mistake");
        assert!(d("18446744073709551615").is_err());
        for bad in NEVER {
            assert!(d(bad).is_err(), "window_ms {bad}");
        }
    }

    #[test]
    fn rate_limit_at_its_bounds() {
        let r = |p: &str, b: &str| {
            subscribe(&format!(r#"rate_limit":{{"per_second":{p},"burst":{b}}}"#))
        };
        assert!(r("1000000", "1000000").is_ok());
        assert!(r("0.001", "1").is_ok());
        assert!(r("1000000.5", "1").is_err());
        assert!(r("1e7", "1").is_err());
        assert!(r("0", "1").is_err());
        assert!(r("-1", "1").is_err());
        assert!(r("1e999", "1").is_err(), "out of f64 range");
        assert!(r("10", "1000001").is_err());
        assert!(r("10", "0").is_err());
        assert!(r("10", "4294967295").is_err());
        for bad in ["-1", "1.5", "1e20", "\"5\""] {
            assert!(r("10", bad).is_err(), "burst {bad}");
        }
    }
}

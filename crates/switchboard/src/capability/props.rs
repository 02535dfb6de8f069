//! Property tests over every capability with arbitrary action values: what
//! a lambda can write either is refused where actions are parsed (exactly
//! the values out of their documented range) or drives the capability
//! without a panic; the capabilities themselves take any value, in range
//! or not, and the shared timer shards keep firing after all of it.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::value::RawValue;
use switchboard_protocol::lambda::{bounds, Action, BatchSpec, RateLimit};
use switchboard_protocol::Topic;
use tokio::time::{Duration, Instant};

use super::batch::Batcher;
use super::dedup::Dedup;
use super::rate_limit::RateLimiter;
use super::timer_shards::tests::fired;
use super::timer_shards::{TimerError, TimerKind, Timers, MAX_DELAY};
use crate::broker::Message;
use crate::ops::config::SlowConsumer;
use crate::stream::outbox::Outbox;

/// A JSON number as a lambda may write it: the edges of every range,
/// anything a u64 or an f64 holds, negative, fractional, out of range.
fn number() -> impl Strategy<Value = String> {
    let edges = [
        0u64,
        1,
        bounds::MAX_BATCH_DELAY_MS,
        bounds::MAX_BATCH_DELAY_MS + 1,
        u64::from(bounds::MAX_BATCH_MESSAGES),
        u64::from(bounds::MAX_BATCH_MESSAGES) + 1,
        bounds::MAX_DEDUP_WINDOW_MS,
        bounds::MAX_DEDUP_WINDOW_MS + 1,
        u64::from(bounds::MAX_RATE_BURST),
        u64::from(bounds::MAX_RATE_BURST) + 1,
        bounds::MAX_TIMER_MS,
        bounds::MAX_TIMER_MS + 1,
        u64::from(u32::MAX),
        u64::from(u32::MAX) + 1,
        u64::MAX,
    ];
    prop_oneof![
        proptest::sample::select(edges.to_vec()).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        Just("1e999".to_owned()),
        Just("-1e999".to_owned()),
        Just("1e-999".to_owned()),
        Just("18446744073709551616".to_owned()),
    ]
}

fn parse(text: &str) -> Result<Action, String> {
    let raw: Box<RawValue> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Action::parse(&raw).map_err(|e| e.0)
}

/// The value of a JSON number if it is a whole number a u64 holds.
fn as_u64(text: &str) -> Option<u64> {
    text.parse().ok()
}

fn in_range(text: &str, min: u64, max: u64) -> bool {
    as_u64(text).is_some_and(|v| (min..=max).contains(&v))
}

fn message(n: u64) -> Arc<Message> {
    Arc::new(Message::new(
        Topic::new("t").unwrap_or_else(|_| unreachable!("a valid topic")),
        Arc::from(n.to_string()),
        RawValue::from_string(n.to_string()).unwrap_or_else(|_| unreachable!("a number")),
        Arc::from("e"),
        None,
    ))
}

/// Runs the subscription's capabilities over `offsets` (ms after a start).
fn drive(
    rate: Option<RateLimit>,
    window_ms: Option<u64>,
    batch: Option<BatchSpec>,
    offsets: &[u64],
) {
    let t0 = Instant::now();
    let mut r = rate.map(|r| RateLimiter::new(r.per_second, r.burst));
    let mut d = window_ms.map(|w| Dedup::new(Duration::from_millis(w)));
    let mut b = batch.map(|b| Batcher::new(b.max_messages, Duration::from_millis(b.max_delay_ms)));
    for (i, off) in offsets.iter().enumerate() {
        let now = t0 + Duration::from_millis(*off);
        if let Some(r) = &mut r {
            r.check(now);
        }
        if let Some(d) = &mut d {
            d.check(i as u64 % 7, now);
            assert!(d.len() <= super::dedup::MAX_KEYS);
        }
        if let Some(b) = &mut b {
            b.push(message(i as u64), now);
            b.due(now);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn timer_actions_are_refused_exactly_out_of_range(n in number(), every in any::<bool>()) {
        let field = if every { "every_ms" } else { "after_ms" };
        let parsed = parse(&format!(r#"{{"type":"timer","name":"t","{field}":{n}}}"#));
        prop_assert_eq!(parsed.is_ok(), in_range(&n, 1, bounds::MAX_TIMER_MS), "{} = {}: {:?}", field, n, parsed);
    }

    #[test]
    fn subscribe_options_are_refused_exactly_out_of_range(
        per_second in number(), burst in number(), window in number(),
        max_messages in number(), max_delay in number(),
        which in 0u8..3,
        offsets in proptest::collection::vec(0u64..10_000_000, 1..64),
    ) {
        let (option, ok) = match which {
            0 => (
                format!(r#""rate_limit":{{"per_second":{per_second},"burst":{burst}}}"#),
                per_second.parse::<f64>().is_ok_and(|p| p > 0.0 && p <= bounds::MAX_RATE_PER_SECOND)
                    && in_range(&burst, 1, bounds::MAX_RATE_BURST.into()),
            ),
            1 => (
                format!(r#""dedup":{{"window_ms":{window}}}"#),
                in_range(&window, 1, bounds::MAX_DEDUP_WINDOW_MS),
            ),
            _ => (
                format!(r#""batch":{{"max_messages":{max_messages},"max_delay_ms":{max_delay}}}"#),
                in_range(&max_messages, 1, bounds::MAX_BATCH_MESSAGES.into())
                    && in_range(&max_delay, 0, bounds::MAX_BATCH_DELAY_MS),
            ),
        };
        let parsed = parse(&format!(r#"{{"type":"subscribe","topic":"t",{option}}}"#));
        prop_assert_eq!(parsed.is_ok(), ok, "{}: {:?}", option, parsed);
        if let Ok(Action::Subscribe { rate_limit, dedup, batch, .. }) = parsed {
            drive(rate_limit, dedup.map(|d| d.window_ms), batch, &offsets);
        }
    }

    /// Below the parser, the capabilities take any value at all.
    #[test]
    fn capabilities_take_any_value(
        per_second in any::<f64>(), burst in any::<u32>(), window in any::<u64>(),
        max_messages in any::<u32>(), max_delay in any::<u64>(),
        offsets in proptest::collection::vec(any::<u32>().prop_map(u64::from), 1..64),
    ) {
        drive(
            Some(RateLimit { per_second, burst }),
            Some(window),
            Some(BatchSpec { max_messages, max_delay_ms: max_delay }),
            &offsets,
        );
    }

    #[test]
    fn sink_records_are_one_json_line(app in "[a-z]{1,8}", stream in "\\PC{0,16}", at in any::<u64>(), data in "\\PC{0,32}") {
        let data = serde_json::value::to_raw_value(&data).unwrap_or_else(|_| unreachable!("a string"));
        let line = super::sink::record(&app, &stream, at, &data);
        prop_assert!(!line.contains(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&line).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(v["at_ms"].as_u64(), Some(at));
    }
}

/// Any delay at all: armed if within the node's maximum, refused if not,
/// and the shared shards still fire a short timer afterwards.
#[test]
fn timers_take_any_delay_and_keep_firing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    rt.block_on(async {
        let timers = Timers::start(2);
        let o = Arc::new(Outbox::new(1 << 16, SlowConsumer::Close));
        let mut runner = proptest::test_runner::TestRunner::default();
        let mut kept = Vec::new();
        let delays = (
            any::<u64>(),
            any::<u32>(),
            proptest::option::of(any::<u64>()),
        );
        for _ in 0..2048 {
            let (secs, nanos, every) = delays
                .new_tree(&mut runner)
                .unwrap_or_else(|e| panic!("strategy: {e}"))
                .current();
            let after = Duration::new(secs >> (secs % 64), nanos % 1_000_000_000);
            let every = every.map(Duration::from_millis);
            let r = timers.set(&o, 1, TimerKind::Named("x".into()), after, every);
            let too_long = after > MAX_DELAY || every.is_some_and(|e| e > MAX_DELAY);
            match r {
                Ok(t) => {
                    assert!(!too_long, "{after:?} {every:?}");
                    kept.push(t);
                }
                Err(e) => assert_eq!((e, too_long), (TimerError::TooLong, true)),
            }
        }
        fired(&o);
        let soon: Vec<_> = (0..4)
            .map(|_| {
                timers
                    .set(
                        &o,
                        2,
                        TimerKind::Named("s".into()),
                        Duration::from_millis(10),
                        None,
                    )
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let fired = fired(&o);
        assert!(
            soon.iter().all(|t| fired.contains(&t.id)),
            "every shard still fires"
        );
        drop(kept);
    });
}

//! Timers seen by a real client and a real PHP lambda
//! (tests/php/capabilities.php pushes a per-name counter to the client on
//! each `timer` event): periodic and one-shot timers, replace by name,
//! cancel, death with the stream, the minimum interval, and ticks skipped
//! while the previous one is still in flight.

mod caps;

use std::time::{Duration, Instant};

use caps::{command, next_named, unix_ms, wait_metric, Caps};
use serde_json::{json, Value};
use test_support::{eventually, WAIT};

fn ticks_named(caps: &Caps, tag: &str, name: &str) -> Vec<Value> {
    caps.events("timer", tag)
        .into_iter()
        .filter(|e| e["name"] == name)
        .collect()
}

#[tokio::test]
async fn periodic_and_one_shot_timers_fire_timer_events() -> anyhow::Result<()> {
    let caps = Caps::start().await?;
    let opened_at = unix_ms();
    let mut ws = caps
        .open(
            "s",
            json!({"tag": "t", "timers": [
                {"name": "every", "every_ms": 200},
                {"name": "once", "after_ms": 300},
            ]}),
        )
        .await?;

    // The client sees PHP's counter for each tick.
    let mut every = Vec::new();
    let mut once = Vec::new();
    while every.len() < 4 {
        let tick = next_named(&mut ws, "s", "tick").await?;
        match tick["data"]["name"].as_str() {
            Some("every") => every.push(tick["data"].clone()),
            Some("once") => once.push(tick["data"].clone()),
            _ => anyhow::bail!("unexpected tick {tick}"),
        }
    }
    let counters: Vec<u64> = every.iter().filter_map(|t| t["tick"].as_u64()).collect();
    assert_eq!(counters, [1, 2, 3, 4]);
    // A one-shot fires once (by now, at 300 ms < 4 x 200 ms), and never again.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(ticks_named(&caps, "t", "once").len(), 1);

    let fired: Vec<u64> = ticks_named(&caps, "t", "every")
        .iter()
        .filter_map(|e| e["fired_at_ms"].as_u64())
        .collect();
    assert!(fired.len() >= 4, "{fired:?}");
    assert!(fired.windows(2).all(|w| w[0] <= w[1]), "{fired:?}");
    // The first fire comes after the interval, and none is in the future.
    assert!(fired[0] >= opened_at + 200 - 1, "{opened_at} {fired:?}");
    assert!(*fired.last().unwrap_or(&0) <= unix_ms());
    let once_at = ticks_named(&caps, "t", "once")[0]["fired_at_ms"]
        .as_u64()
        .unwrap_or(0);
    assert!(once_at >= opened_at + 300 - 1, "{opened_at} {once_at}");

    assert_eq!(caps.metric("timers_set").await?, 2.0);
    let fired_metric = caps.metric("timers_fired").await?;
    assert!(
        fired_metric >= (fired.len() + 1) as f64,
        "{fired_metric} vs {} logged",
        fired.len() + 1
    );
    Ok(())
}

#[tokio::test]
async fn the_same_name_replaces_a_timer_and_cancel_timer_stops_one() -> anyhow::Result<()> {
    let caps = Caps::start().await?;
    let mut ws = caps
        .open(
            "s",
            json!({"tag": "r", "timers": [
                {"name": "a", "every_ms": 1000},
                {"name": "b", "every_ms": 150},
            ]}),
        )
        .await?;
    // Long before "a" first comes due, it becomes a one-shot at 200 ms.
    command(
        &mut ws,
        "s",
        json!({"cmd": "timer", "timer": {"name": "a", "after_ms": 200}}),
    )
    .await?;

    // Two ticks of "b", then cancel it.
    let mut b = 0;
    while b < 2 {
        let tick = next_named(&mut ws, "s", "tick").await?;
        b += usize::from(tick["data"]["name"] == "b");
    }
    command(&mut ws, "s", json!({"cmd": "cancel", "name": "b"})).await?;
    let b_at_cancel = ticks_named(&caps, "r", "b").len();

    // Past the old "a"'s 1 s and 2 s, and many "b" intervals.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(
        ticks_named(&caps, "r", "a").len(),
        1,
        "the replacing one-shot fired once; the replaced periodic timer never: {:?}",
        caps.log()
    );
    let b_after = ticks_named(&caps, "r", "b").len() - b_at_cancel;
    assert_eq!(b_after, 0, "ticks of b after cancel_timer was answered");
    assert_eq!(caps.metric("timers_set").await?, 3.0);
    Ok(())
}

#[tokio::test]
async fn timers_die_with_their_stream() -> anyhow::Result<()> {
    let caps = Caps::start().await?;
    let timers = json!([{"name": "hb", "every_ms": 100}]);
    // One stream closed by the client, one whose connection just goes away.
    let mut ws = caps
        .open("s", json!({"tag": "closed", "timers": timers}))
        .await?;
    let mut gone = caps
        .open("g", json!({"tag": "dropped", "timers": timers}))
        .await?;
    for _ in 0..2 {
        next_named(&mut ws, "s", "tick").await?;
        next_named(&mut gone, "g", "tick").await?;
    }
    ws.send_json(&json!({"type": "close", "stream": "s"}))
        .await?;
    let closed = ws
        .recv_until(|v| v["type"] == "closed" && v["stream"] == "s", WAIT)
        .await?;
    assert_eq!(closed["code"], 1000, "{closed}");
    drop(gone);

    for tag in ["closed", "dropped"] {
        eventually(WAIT, "the lambda's close event", || {
            caps.events("close", tag).into_iter().next()
        })
        .await?;
    }
    let before: Vec<usize> = ["closed", "dropped"]
        .iter()
        .map(|t| caps.events("timer", t).len())
        .collect();
    let fired_before = caps.metric("timers_fired").await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after: Vec<usize> = ["closed", "dropped"]
        .iter()
        .map(|t| caps.events("timer", t).len())
        .collect();
    assert_eq!(before, after, "no timer events once the streams are gone");
    assert_eq!(caps.metric("timers_fired").await?, fired_before);
    assert!(before.iter().all(|n| *n >= 2), "{before:?}");
    Ok(())
}

#[tokio::test]
async fn a_timer_below_the_minimum_is_skipped_and_counted_invalid() -> anyhow::Result<()> {
    let caps = Caps::start().await?;
    let mut ws = caps
        .open(
            "s",
            json!({"tag": "m", "timers": [
                {"name": "fast", "every_ms": 50},
                {"name": "soon", "after_ms": 99},
                {"name": "neither"},
                {"name": "ok", "after_ms": 150},
            ]}),
        )
        .await?;
    let tick = next_named(&mut ws, "s", "tick").await?;
    assert_eq!(tick["data"]["name"], "ok", "{tick}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let names: Vec<Value> = caps
        .events("timer", "m")
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert_eq!(names, [json!("ok")]);
    assert_eq!(caps.metric("invalid_actions").await?, 3.0);
    assert_eq!(caps.metric("timers_set").await?, 1.0);
    Ok(())
}

#[tokio::test]
async fn the_minimum_timer_interval_is_configurable() -> anyhow::Result<()> {
    let caps = Caps::start_with(|_| "[limits]\nmin_timer_ms = 300\n".into(), &[]).await?;
    let mut ws = caps
        .open(
            "s",
            json!({"tag": "c", "timers": [
                {"name": "under", "every_ms": 200},
                {"name": "at", "after_ms": 300},
            ]}),
        )
        .await?;
    let tick = next_named(&mut ws, "s", "tick").await?;
    assert_eq!(tick["data"]["name"], "at", "{tick}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(ticks_named(&caps, "c", "under").is_empty());
    assert_eq!(caps.metric("invalid_actions").await?, 1.0);
    Ok(())
}

#[tokio::test]
async fn a_tick_is_skipped_while_the_previous_one_is_in_flight() -> anyhow::Result<()> {
    const EVERY_MS: u64 = 100;
    const SLOW_MS: u64 = 450;
    let caps = Caps::start().await?;
    let started = Instant::now();
    let mut ws = caps
        .open(
            "s",
            json!({"tag": "slow", "slow_ms": SLOW_MS,
                   "timers": [{"name": "hb", "every_ms": EVERY_MS}]}),
        )
        .await?;
    let mut pushed = 0;
    while pushed < 4 {
        next_named(&mut ws, "s", "tick").await?;
        pushed += 1;
    }
    // Let the in-flight tick finish, so that the log and the counters agree.
    wait_metric(&caps, "timers_skipped", |v| v > 0.0).await?;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let ticks = caps.events("timer", "slow");
    let skipped = caps.metric("timers_skipped").await? as u64;
    let fired = caps.metric("timers_fired").await? as u64;

    // The lambda never has two ticks of the timer at once: each starts after
    // the previous one's answer, so they are at least SLOW_MS apart.
    let starts: Vec<u64> = ticks
        .iter()
        .filter_map(|e| e["start_us"].as_u64())
        .collect();
    let ends: Vec<u64> = ticks.iter().filter_map(|e| e["end_us"].as_u64()).collect();
    assert!(starts.len() >= 4, "{ticks:?}");
    for i in 1..starts.len() {
        assert!(
            starts[i] >= ends[i - 1],
            "tick {i} overlapped the previous one"
        );
    }
    // Far fewer ticks reached the lambda than came due; the rest were skipped.
    let due = elapsed_ms / EVERY_MS;
    assert!(
        (fired as u64) <= elapsed_ms / SLOW_MS + 2,
        "{fired} fired in {elapsed_ms} ms"
    );
    assert!(
        skipped > 0 && fired + skipped <= due + 2,
        "{fired} fired + {skipped} skipped, {due} due"
    );
    assert!(
        fired + skipped >= due / 2,
        "{fired} fired + {skipped} skipped, {due} due"
    );
    assert!(
        fired >= ticks.len() as u64 && fired <= ticks.len() as u64 + 1,
        "{fired} fired, {} logged",
        ticks.len()
    );
    Ok(())
}

/// A tick that comes due while the lambda is still answering the event that
/// cancels its timer waits in the stream's queue behind it. Once the cancel
/// is applied, that tick must not reach the lambda: `cancel_timer` stops it.
#[tokio::test]
async fn a_tick_queued_behind_cancel_timer_is_not_delivered() -> anyhow::Result<()> {
    let caps = Caps::start().await?;
    let mut ws = caps
        .open(
            "s",
            json!({"tag": "q", "timers": [{"name": "b", "every_ms": 100}]}),
        )
        .await?;
    next_named(&mut ws, "s", "tick").await?;
    // The cancel takes 350 ms to answer: ticks of "b" come due meanwhile.
    command(
        &mut ws,
        "s",
        json!({"cmd": "cancel", "name": "b", "sleep_ms": 350}),
    )
    .await?;
    let cancel_answered_us = caps
        .events("client_message", "q")
        .first()
        .and_then(|e| e["end_us"].as_u64())
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let late: Vec<Value> = caps
        .events("timer", "q")
        .into_iter()
        .filter(|e| e["start_us"].as_u64().unwrap_or(0) > cancel_answered_us)
        .collect();
    assert!(
        late.is_empty(),
        "timer events after cancel_timer was answered: {late:?}"
    );
    Ok(())
}

/// The same for a replaced timer: a tick of the old one queued behind the
/// answer that replaced it must not reach the lambda, and the replacing
/// timer then ticks on its own schedule.
#[tokio::test]
async fn a_tick_of_a_replaced_timer_queued_behind_the_replace_is_not_delivered(
) -> anyhow::Result<()> {
    let caps = Caps::start().await?;
    let mut ws = caps
        .open(
            "s",
            json!({"tag": "q", "timers": [{"name": "a", "every_ms": 100}]}),
        )
        .await?;
    next_named(&mut ws, "s", "tick").await?;
    command(
        &mut ws,
        "s",
        json!({"cmd": "timer", "sleep_ms": 350, "timer": {"name": "a", "after_ms": 1500}}),
    )
    .await?;
    let replaced_us = caps
        .events("client_message", "q")
        .first()
        .and_then(|e| e["end_us"].as_u64())
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let late: Vec<Value> = caps
        .events("timer", "q")
        .into_iter()
        .filter(|e| e["start_us"].as_u64().unwrap_or(0) > replaced_us)
        .collect();
    assert!(
        late.is_empty(),
        "the replacing one-shot is due at 1.5 s; ticks before it: {late:?}"
    );
    Ok(())
}

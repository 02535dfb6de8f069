//! Per-subscription capabilities seen by a real client and a real PHP lambda
//! (tests/php/capabilities.php): rate limits, dedup and batching. Each test
//! counts what the lambda was given (its event log), what the client got,
//! and the app's counters in `/metrics`.

mod caps;

use std::time::{Duration, Instant};

use caps::{events_until, next_event, wait_metric, Caps};
use serde_json::{json, Value};
use test_support::publish_many;
use test_support::{cursor_position, WAIT};

// ---- Rate limits ------------------------------------------------------------

const BURST: u32 = 3;
const PER_SECOND: f64 = 2.0;
const SENT: usize = 30;

/// Publishes a burst of [`SENT`] messages to a rate-limited subscription with
/// `deliver`; returns the ids that got through (as the client saw them).
async fn rate_limited_burst(deliver: &str) -> anyhow::Result<()> {
    let caps = Caps::start().await?;
    let topic = format!("rl/{deliver}");
    let mut ws = caps
        .open(
            "s",
            json!({"tag": "rl", "subs": [{
                "topic": topic, "deliver": deliver,
                "rate_limit": {"per_second": PER_SECOND, "burst": BURST},
            }]}),
        )
        .await?;

    let datas: Vec<Value> = (0..SENT).map(|n| json!({ "n": n })).collect();
    let started = Instant::now();
    let ids = publish_many(&caps.url(), &topic, &datas).await?;
    // Every message was either taken in or dropped by the limiter.
    let deadline = Instant::now() + WAIT;
    let drops = loop {
        let m = caps.metrics().await?;
        let admitted = m.app("events_in", caps::APP);
        let drops = m.app("rate_limit_drops", caps::APP);
        if admitted + drops >= SENT as f64 {
            break drops as usize;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{admitted} admitted + {drops} dropped of {SENT}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = started.elapsed().as_secs_f64();
    let passed = SENT - drops;
    let allowed = BURST as f64 + PER_SECOND * elapsed;
    assert!(
        passed >= BURST as usize && passed as f64 <= allowed + 1.0,
        "{passed} of {SENT} passed in {elapsed:.2}s; burst {BURST} + {PER_SECOND}/s allows {allowed:.1}"
    );

    // The client gets exactly those, in order, then (once the limiter has
    // refilled) a sentinel: nothing else came in between.
    let mut got = Vec::new();
    for _ in 0..passed {
        got.push(next_event(&mut ws, "s").await?);
    }
    tokio::time::sleep(Duration::from_millis((1000.0 / PER_SECOND) as u64 + 200)).await;
    let sentinel = caps.publish(&topic, json!({"end": true}), None).await?;
    let last = next_event(&mut ws, "s").await?;
    let client_ids: Vec<String> = got.iter().map(|f| message_id(f, &topic)).collect();
    assert_eq!(message_id(&last, &topic), sentinel, "{last}");
    assert_eq!(&client_ids[..BURST as usize], &ids[..BURST as usize]);
    assert!(
        client_ids.windows(2).all(|w| id_num(&w[0]) < id_num(&w[1])),
        "{client_ids:?}"
    );
    assert_eq!(
        caps.metric("rate_limit_drops").await? as usize,
        SENT - passed
    );

    // The lambda saw only what passed (a lambda subscription), or nothing (direct).
    let seen: Vec<String> = caps
        .events("message", "rl")
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    if deliver == "lambda" {
        let mut expected = client_ids.clone();
        expected.push(sentinel);
        assert_eq!(seen, expected);
        assert!(got.iter().all(|f| f["event"] == "msg"), "{got:?}");
    } else {
        assert!(seen.is_empty(), "{seen:?}");
        assert_eq!(caps.metric("direct_deliveries").await? as usize, passed + 1);
        assert!(got.iter().all(|f| f["topic"] == topic.as_str()), "{got:?}");
    }
    Ok(())
}

/// The message id an event frame carries: a push's `data.id` (from the
/// lambda) or, for a direct event, the cursor's position in `topic`.
fn message_id(frame: &Value, topic: &str) -> String {
    match frame["event"].as_str() {
        Some("msg") => frame["data"]["id"].as_str().unwrap_or_default().to_owned(),
        _ => frame["id"]
            .as_str()
            .and_then(|c| cursor_position(c, topic))
            .unwrap_or_default(),
    }
}

fn id_num(id: &str) -> u64 {
    id.parse().unwrap_or(u64::MAX)
}

#[tokio::test]
async fn a_rate_limit_bounds_what_the_lambda_and_the_client_get() -> anyhow::Result<()> {
    rate_limited_burst("lambda").await
}

#[tokio::test]
async fn a_rate_limit_bounds_direct_delivery_too() -> anyhow::Result<()> {
    rate_limited_burst("direct").await
}

// ---- Dedup ------------------------------------------------------------------

/// What a dedup test reads: per topic, the data the client got, in order.
fn data_by_topic(frames: &[Value], topic: &str) -> Vec<Value> {
    frames
        .iter()
        .filter_map(|f| match f["event"].as_str() {
            Some("msg") if f["data"]["topic"] == topic => Some(f["data"]["data"].clone()),
            None if f["topic"] == topic => Some(f["data"].clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn dedup_by_data_hash_drops_repeats_within_the_window() -> anyhow::Result<()> {
    let caps = Caps::start().await?;
    let dedup = json!({"window_ms": 60_000});
    let mut ws = caps
        .open(
            "s",
            json!({"tag": "dd", "subs": [
                {"topic": "dd/direct", "deliver": "direct", "dedup": dedup},
                {"topic": "dd/lambda", "deliver": "lambda", "dedup": dedup},
                {"topic": "dd/short", "deliver": "direct", "dedup": {"window_ms": 300}},
            ]}),
        )
        .await?;

    for topic in ["dd/direct", "dd/lambda"] {
        for d in ["A", "A", "B", "A", "C"] {
            caps.publish(topic, json!({ "v": d }), None).await?;
        }
    }
    // A short window: a repeat right away is dropped, one after it is not.
    caps.publish("dd/short", json!("A"), None).await?;
    caps.publish("dd/short", json!("A"), None).await?;
    wait_metric(&caps, "dedup_drops", |v| v >= 5.0).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    caps.publish("dd/short", json!("A"), None).await?;
    // The publish API's own dedup comes first: a repeated (topic, dedup_key)
    // answers the first id and never reaches the subscription.
    let first = caps.publish("dd/direct", json!("K"), Some("k")).await?;
    let again = caps.publish("dd/direct", json!("K2"), Some("k")).await?;
    assert_eq!(first, again);

    for topic in ["dd/direct", "dd/lambda", "dd/short"] {
        caps.publish(topic, json!("end"), None).await?;
    }
    let mut ends = 0;
    let frames = events_until(&mut ws, "s", WAIT, |f| {
        let data = if f["event"] == "msg" {
            &f["data"]["data"]
        } else {
            &f["data"]
        };
        ends += usize::from(data == "end");
        ends == 3
    })
    .await?;

    let abc = [json!({"v": "A"}), json!({"v": "B"}), json!({"v": "C"})];
    let mut direct = abc.to_vec();
    direct.extend([json!("K"), json!("end")]);
    assert_eq!(data_by_topic(&frames, "dd/direct"), direct);
    let mut lambda = abc.to_vec();
    lambda.push(json!("end"));
    assert_eq!(data_by_topic(&frames, "dd/lambda"), lambda);
    assert_eq!(
        data_by_topic(&frames, "dd/short"),
        [json!("A"), json!("A"), json!("end")]
    );

    // The lambda was given only what was delivered on its topic.
    let lambda_data: Vec<Value> = caps
        .log()
        .into_iter()
        .filter(|e| e["type"] == "message")
        .map(|e| e["topic"].clone())
        .collect();
    assert_eq!(lambda_data, vec![json!("dd/lambda"); 4]);
    assert_eq!(caps.metric("dedup_drops").await?, 5.0);
    Ok(())
}

#[tokio::test]
async fn dedup_by_key_drops_what_the_publish_api_let_through() -> anyhow::Result<()> {
    // With a publish dedup window of 1 ms, a repeated dedup_key a few ms
    // later is published again (a new id), and only the subscription's own
    // window can drop it. A key wins over the data: same data, another key
    // is not a duplicate.
    let caps = Caps::start_with(|_| "[limits]\npublish_dedup_window_ms = 1\n".into(), &[]).await?;
    let dedup = json!({"window_ms": 60_000});
    let mut ws = caps
        .open(
            "s",
            json!({"tag": "dk", "subs": [
                {"topic": "dk/direct", "deliver": "direct", "dedup": dedup},
                {"topic": "dk/lambda", "deliver": "lambda", "dedup": dedup},
            ]}),
        )
        .await?;

    for topic in ["dk/direct", "dk/lambda"] {
        let first = caps.publish(topic, json!("x1"), Some("k1")).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let repeat = caps.publish(topic, json!("x2"), Some("k1")).await?;
        assert_ne!(first, repeat, "published again past the 1 ms window");
        caps.publish(topic, json!("x1"), Some("k2")).await?;
        caps.publish(topic, json!("x3"), None).await?;
        caps.publish(topic, json!("x3"), None).await?;
        caps.publish(topic, json!("end"), None).await?;
    }
    let mut ends = 0;
    let frames = events_until(&mut ws, "s", WAIT, |f| {
        ends += usize::from(f["data"] == "end" || f["data"]["data"] == "end");
        ends == 2
    })
    .await?;
    let expected = [json!("x1"), json!("x1"), json!("x3"), json!("end")];
    assert_eq!(data_by_topic(&frames, "dk/direct"), expected);
    assert_eq!(data_by_topic(&frames, "dk/lambda"), expected);
    assert_eq!(caps.events("message", "dk").len(), 4);
    assert_eq!(caps.metric("dedup_drops").await?, 4.0);
    Ok(())
}

// ---- Batching ---------------------------------------------------------------

#[tokio::test]
async fn a_batch_subscription_gives_one_batch_event_per_flush() -> anyhow::Result<()> {
    const MAX_DELAY_MS: u64 = 300;
    let caps = Caps::start().await?;
    let topic = "bt/video";
    let mut ws = caps
        .open(
            "s",
            json!({"tag": "bt", "subs": [{
                "topic": topic, "deliver": "lambda",
                "batch": {"max_messages": 5, "max_delay_ms": MAX_DELAY_MS},
            }]}),
        )
        .await?;

    // 12 messages at once: two full batches of 5 (size), then 2 on the delay.
    let datas: Vec<Value> = (0..12).map(|n| json!({ "n": n })).collect();
    let started = Instant::now();
    let ids = publish_many(&caps.url(), topic, &datas).await?;
    let mut pushes = Vec::new();
    for _ in 0..3 {
        pushes.push(next_event(&mut ws, "s").await?);
    }
    let last_after = started.elapsed();

    let sizes: Vec<usize> = pushes
        .iter()
        .map(|p| p["data"]["ids"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes, [5, 5, 2], "{pushes:?}");
    let got: Vec<String> = pushes
        .iter()
        .flat_map(|p| p["data"]["ids"].as_array().cloned().unwrap_or_default())
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(got, ids, "every message once, in order");
    let datas_got: Vec<Value> = pushes
        .iter()
        .flat_map(|p| p["data"]["datas"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(datas_got, datas);
    for p in &pushes {
        assert_eq!(p["event"], "batch", "{p}");
        // The push answering a batch carries the cursor of its last message.
        let last = p["data"]["ids"]
            .as_array()
            .and_then(|a| a.last())
            .and_then(Value::as_str)
            .unwrap_or_default();
        let cursor = p["id"]
            .as_str()
            .expect("a push answering a batch has an id");
        assert_eq!(cursor_position(cursor, topic).as_deref(), Some(last), "{p}");
    }
    assert!(
        last_after >= Duration::from_millis(MAX_DELAY_MS - 10),
        "the partial batch waited for max_delay_ms ({last_after:?})"
    );

    // A lone message goes on the delay as a batch of one.
    let started = Instant::now();
    let id = caps.publish(topic, json!("alone"), None).await?;
    let p = next_event(&mut ws, "s").await?;
    assert!(started.elapsed() >= Duration::from_millis(MAX_DELAY_MS - 10));
    assert_eq!(p["data"]["ids"], json!([id]), "{p}");

    let log = caps.log();
    let batches: Vec<&Value> = log.iter().filter(|e| e["type"] == "batch").collect();
    assert_eq!(batches.len(), 4, "{log:?}");
    assert!(
        !log.iter().any(|e| e["type"] == "message"),
        "no message events on a batch subscription: {log:?}"
    );
    assert_eq!(caps.metric("batches").await?, 4.0);
    assert_eq!(caps.metric("events_in").await?, 13.0);
    Ok(())
}

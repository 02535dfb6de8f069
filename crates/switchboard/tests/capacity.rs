//! Capacity accounting: after a scripted workload through a real PHP lambda
//! (tests/php/capabilities.php) and a direct app, `/metrics` and
//! `GET /v1/admin/apps` show the expected counts per app, and the admin
//! endpoint's key checks (401 / 403, and 403 with no admin key configured).

mod caps;

use std::collections::BTreeMap;

use caps::{command, next_event, next_named, wait_metric, Caps, APP, BIN};
use serde_json::{json, Value};
use test_support::{eventually, http_request, Gateway, HttpResponse, WsClient, WAIT};
use test_support::{publish_many, Metrics};

async fn admin_apps(gateway: &Gateway, auth: Option<&str>) -> anyhow::Result<HttpResponse> {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    http_request("GET", &gateway.url("/v1/admin/apps"), &headers, None).await
}

/// The counts the workload below must leave, per app.
fn expected_caps() -> BTreeMap<&'static str, f64> {
    BTreeMap::from([
        ("streams_opened", 1.0),
        ("streams", 0.0),
        ("subscriptions", 0.0),
        // open, timer, 2 messages, 1 batch, 1 client message, close
        ("lambda_events", 7.0),
        // 1 client message + 7 topic messages taken in (2 rate-limited, 2 deduped, 3 batched)
        ("events_in", 8.0),
        // tick, 2 msg, batch, ack
        ("pushes", 5.0),
        ("events_out", 7.0),
        ("direct_deliveries", 2.0),
        ("timers_set", 1.0),
        ("timers_fired", 1.0),
        ("timers_skipped", 0.0),
        ("rate_limit_drops", 3.0),
        ("dedup_drops", 1.0),
        ("batches", 1.0),
        // 2 from a client message, 1 from the close event
        ("sink_records", 3.0),
        ("publishes", 0.0),
        ("invalid_actions", 0.0),
        ("lambda_failures", 0.0),
        ("lambda_retries", 0.0),
        ("drops_lambda_failure", 0.0),
    ])
}

fn expected_plain() -> BTreeMap<&'static str, f64> {
    BTreeMap::from([
        ("streams_opened", 1.0),
        ("streams", 1.0),
        ("subscriptions", 1.0),
        ("lambda_calls", 0.0),
        ("lambda_events", 0.0),
        ("lambda_micros", 0.0),
        ("events_in", 3.0),
        ("events_out", 3.0),
        ("direct_deliveries", 3.0),
        ("pushes", 0.0),
        ("dedup_drops", 0.0),
        ("sink_records", 0.0),
    ])
}

#[tokio::test]
async fn metrics_and_the_admin_api_account_for_each_capability_per_app() -> anyhow::Result<()> {
    let caps = Caps::start_with(
        |dir| {
            format!(
                "[sinks.cap]\nkind = \"file\"\npath = \"{}\"\nflush_interval_ms = 100\n\
                 [apps.plain]\nlambda = \"direct\"\ntopics = [\"cap/*\"]\n",
                dir.join("cap.jsonl").display()
            )
        },
        &["--app", "plain=direct", "--admin-key", "adm"],
    )
    .await?;

    // A direct app's viewer of one of the topics: its own counters.
    let mut plain =
        WsClient::connect(&caps.gateway.ws_url("/v1/ws?app=plain&topic=cap/dedup")).await?;
    assert_eq!(plain.open_reply("0").await?["type"], "opened");

    let mut ws = caps
        .open(
            "s",
            json!({"tag": "w", "close_sink": "cap",
                   "subs": [
                       {"topic": "cap/rate", "deliver": "lambda",
                        "rate_limit": {"per_second": 0.01, "burst": 2}},
                       {"topic": "cap/dedup", "deliver": "direct", "dedup": {"window_ms": 60_000}},
                       {"topic": "cap/batch", "deliver": "lambda",
                        "batch": {"max_messages": 3, "max_delay_ms": 60_000}},
                   ],
                   "timers": [{"name": "once", "after_ms": 150}]}),
        )
        .await?;
    next_named(&mut ws, "s", "tick").await?;
    let five: Vec<Value> = (0..5).map(|n| json!({ "n": n })).collect();
    publish_many(&caps.url(), "cap/rate", &five).await?;
    for d in ["A", "A", "B"] {
        caps.publish("cap/dedup", json!(d), None).await?;
    }
    publish_many(&caps.url(), "cap/batch", &five[..3]).await?;
    // 2 msg pushes, 2 direct events, 1 batch push, in any order across topics.
    let mut kinds = Vec::new();
    for _ in 0..5 {
        let f = next_event(&mut ws, "s").await?;
        kinds.push(f["event"].as_str().unwrap_or("direct").to_owned());
    }
    kinds.sort();
    assert_eq!(kinds, ["batch", "direct", "direct", "msg", "msg"]);
    command(
        &mut ws,
        "s",
        json!({"cmd": "buffer", "sink": "cap", "records": [{"r": 1}, {"r": 2}]}),
    )
    .await?;
    ws.send_json(&json!({"type": "close", "stream": "s"}))
        .await?;
    ws.recv_until(|v| v["type"] == "closed" && v["stream"] == "s", WAIT)
        .await?;
    for _ in 0..3 {
        next_event(&mut plain, "0").await?;
    }
    wait_metric(&caps, "sink_records", |v| v >= 3.0).await?;
    wait_metric(&caps, "lambda_events", |v| v >= 7.0).await?;
    eventually(WAIT, "the close event's record in the sink", || {
        let n = test_support::read_json_lines(&caps.dir().join("cap.jsonl")).len();
        (n == 3).then_some(())
    })
    .await?;

    // /metrics, per app.
    let m = caps.metrics().await?;
    for (app, expected) in [(APP, expected_caps()), ("plain", expected_plain())] {
        for (name, v) in &expected {
            assert_eq!(
                m.app(name, app),
                *v,
                "switchboard_app_{name}{{app={app:?}}}"
            );
        }
    }
    let calls = m.app("lambda_calls", APP);
    assert!((1.0..=7.0).contains(&calls), "{calls} lambda calls");
    assert!(m.app("lambda_micros", APP) > 0.0, "lambda time is measured");
    assert!(m.node("switchboard_bytes_out") > 0.0);

    // The admin API shows the same numbers, and the lambda's latency.
    let resp = admin_apps(&caps.gateway, Some("Bearer adm")).await?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json()?;
    let m = caps.metrics().await?;
    for app in [APP, "plain"] {
        let row = &body["apps"][app];
        for name in KEYS {
            assert_eq!(
                row[name].as_f64(),
                Some(m.app(name, app)),
                "{app}.{name}: {row}"
            );
        }
    }
    let row = &body["apps"][APP];
    assert!(
        row["lambda_latency_avg_ms"]
            .as_f64()
            .is_some_and(|v| v > 0.0),
        "{row}"
    );
    assert!(
        row["lambda"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://127.0.0.1:")),
        "{row}"
    );
    assert_eq!(body["apps"]["plain"]["lambda"], Value::Null);
    assert_eq!(body["apps"]["plain"]["lambda_latency_avg_ms"], 0.0);
    assert_eq!(body["sinks"]["cap"]["records_written"], 3, "{body}");
    Ok(())
}

/// The per-app keys both views must agree on.
const KEYS: [&str; 22] = [
    "streams",
    "streams_opened",
    "subscriptions",
    "lambda_calls",
    "lambda_events",
    "lambda_micros",
    "lambda_failures",
    "events_in",
    "events_out",
    "pushes",
    "publishes",
    "direct_deliveries",
    "timers_set",
    "timers_fired",
    "timers_skipped",
    "rate_limit_drops",
    "dedup_drops",
    "batches",
    "sink_records",
    "invalid_actions",
    "drops_slow_consumer",
    "drops_lambda_failure",
];

#[tokio::test]
async fn the_admin_api_needs_the_admin_key() -> anyhow::Result<()> {
    let gateway = Gateway::start(BIN, &["--admin-key", "s3cret"]).await?;
    let missing = admin_apps(&gateway, None).await?;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json()?["error"]["code"], "unauthorized");
    for wrong in [
        "Bearer nope",
        "Bearer s3cret2",
        "s3cret",
        "Basic s3cret",
        "Bearer ",
    ] {
        let resp = admin_apps(&gateway, Some(wrong)).await?;
        assert_eq!(resp.status, 403, "{wrong:?}");
        assert_eq!(resp.json()?["error"]["code"], "forbidden", "{wrong:?}");
    }
    let ok = admin_apps(&gateway, Some("Bearer s3cret")).await?;
    assert_eq!(ok.status, 200);
    let body = ok.json()?;
    assert!(body["apps"]["pubsub"].is_object(), "{body}");
    // Metrics stay open: they carry no secrets and scrapers hold no key.
    assert_eq!(
        Metrics::fetch(&gateway.http_url())
            .await?
            .node("switchboard_connections"),
        0.0
    );
    Ok(())
}

#[tokio::test]
async fn with_no_admin_key_configured_the_admin_api_answers_403() -> anyhow::Result<()> {
    let gateway = Gateway::start(BIN, &[]).await?;
    for auth in [None, Some("Bearer anything"), Some("Bearer ")] {
        let resp = admin_apps(&gateway, auth).await?;
        assert_eq!(resp.status, 403, "{auth:?}");
        assert_eq!(resp.json()?["error"]["code"], "forbidden", "{auth:?}");
    }
    Ok(())
}

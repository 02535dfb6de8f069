//! The dispatcher's batching across streams, seen at a lambda in the test
//! (test_support::MockLambda) whose first call is held until the
//! test lets it go: an idle
//! lambda gets an event at once, in a request of its own; events of other
//! streams that queue while that call is in flight go out together in the
//! next request, as soon as the call ends, not when `batch_window_us` (set
//! to a minute here) closes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use test_support::{answer_each, gateway_with_config, wait_app_metric, MockLambda, MockReply};
use test_support::{eventually, TempDir, WsClient, WAIT};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
const APP: &str = "batched";

fn accept(event: &Value) -> Vec<Value> {
    if event["type"] == "open" {
        vec![json!({"type": "accept"})]
    } else {
        vec![]
    }
}

fn opened_streams(request: &Value) -> Vec<String> {
    request["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["type"] == "open")
                .filter_map(|e| e["params"]["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn events_behind_a_busy_call_go_out_together_when_it_ends() -> anyhow::Result<()> {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let (release, gate) = tokio::sync::watch::channel(false);
    let lambda = MockLambda::start(Arc::new(move |req| {
        let answer = MockReply::Json(answer_each(req, accept));
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            MockReply::Gated(gate.clone(), Box::new(answer))
        } else {
            answer
        }
    }))
    .await?;
    let dir = TempDir::new("batching")?;
    let gateway = gateway_with_config(
        BIN,
        &dir,
        &format!(
            "[apps.{APP}]\nlambda = \"{}\"\nmax_batch = 100\nbatch_window_us = 60000000\n\
             max_concurrency = 4\n",
            lambda.url()
        ),
        &[],
    )
    .await?;

    let mut first = WsClient::connect(&gateway.ws_url("/v1/ws")).await?;
    first
        .send_json(&json!({"type": "open", "stream": "s0", "app": APP, "params": {"name": "s0"}}))
        .await?;
    eventually(WAIT, "the first open reaching the lambda", || {
        (lambda.request_count() == 1).then_some(())
    })
    .await?;

    // While the first call is held, three more streams open; their opens
    // reach the dispatcher's queue (the gateway counts them as events).
    let mut others = Vec::new();
    for name in ["s1", "s2", "s3"] {
        let mut ws = WsClient::connect(&gateway.ws_url("/v1/ws")).await?;
        ws.send_json(
            &json!({"type": "open", "stream": name, "app": APP, "params": {"name": name}}),
        )
        .await?;
        others.push((name, ws));
    }

    wait_app_metric(&gateway.http_url(), "lambda_queue", APP, WAIT, |n| n == 3.0).await?;
    assert_eq!(lambda.request_count(), 1, "nothing else went out meanwhile");
    release.send_replace(true);

    // All of them open within WAIT, far inside the minute-long window.
    assert_eq!(first.open_reply("s0").await?["type"], "opened");
    for (name, ws) in &mut others {
        let reply = ws.open_reply(name).await?;
        assert_eq!(reply["type"], "opened", "{reply}");
    }

    let requests = lambda.requests();
    let batches: Vec<Vec<String>> = requests.iter().map(opened_streams).collect();
    assert_eq!(batches.len(), 2, "requests: {batches:?}");
    assert_eq!(
        batches[0],
        ["s0"],
        "the idle lambda got the first open alone"
    );
    let mut second = batches[1].clone();
    second.sort();
    assert_eq!(
        second,
        ["s1", "s2", "s3"],
        "the queued opens went out in one request"
    );
    Ok(())
}

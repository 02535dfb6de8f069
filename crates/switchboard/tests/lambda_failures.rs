//! Lambda failures against the real gateway and a scriptable lambda in the
//! test (test_support::MockLambda), so that delays and failures are
//! exact: a lambda that is down, slow (past `timeout_ms`), answers 5xx,
//! garbage or the wrong number of results, or hangs up is retried (requests
//! counted at the lambda), then `on_failure` applies (`drop`, `deliver_raw`,
//! `close`); the per-app circuit breaker opens, fails at once, half-opens
//! with one trial and closes on success; another app is unaffected; every
//! case shows in /metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::{
    answer_each, publish_many, wait_app_metric, write_config, Metrics, MockHandler, MockLambda,
    MockReply,
};
use test_support::{cursor_position, eventually, Gateway, TempDir, WsClient, WAIT};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
const APP: &str = "flaky";
const OTHER: &str = "steady";
/// The flaky app's per-call timeout.
const TIMEOUT_MS: u64 = 400;
const RETRIES: usize = 2;

/// The actions of a working lambda: accept and subscribe to `params.topic`
/// (lambda delivery), push each message marked, nothing for the rest.
fn healthy_actions(event: &Value) -> Vec<Value> {
    match event["type"].as_str() {
        Some("open") => vec![
            json!({"type": "accept"}),
            json!({"type": "subscribe", "topic": event["params"]["topic"], "deliver": "lambda"}),
        ],
        Some("message") => vec![json!({
            "type": "push", "event": "msg",
            "data": {"marked": "mock", "id": event["id"], "data": event["data"]},
        })],
        _ => vec![],
    }
}

fn healthy() -> MockHandler {
    Arc::new(|req| MockReply::Json(answer_each(req, healthy_actions)))
}

fn has_message(req: &Value) -> bool {
    req["events"]
        .as_array()
        .is_some_and(|es| es.iter().any(|e| e["type"] == "message"))
}

/// Requests carrying a `message` event fail with `failure`; others are answered well.
fn failing_messages(failure: MockReply) -> MockHandler {
    Arc::new(move |req| {
        if has_message(req) {
            failure.clone()
        } else {
            MockReply::Json(answer_each(req, healthy_actions))
        }
    })
}

/// The failures a lambda can have while it is up.
fn failures() -> Vec<(&'static str, MockReply)> {
    vec![
        (
            "status_503",
            MockReply::Raw(503, r#"{"error":"busy"}"#.into()),
        ),
        ("status_500", MockReply::Raw(500, "oops".into())),
        (
            "garbage",
            MockReply::Raw(200, r#"{"results": [ not json"#.into()),
        ),
        (
            "no_results",
            MockReply::Raw(200, r#"{"results":[]}"#.into()),
        ),
        (
            "too_many_results",
            MockReply::Raw(200, r#"{"results":[{"actions":[]},{"actions":[]}]}"#.into()),
        ),
        (
            "slow",
            MockReply::Delay(
                Duration::from_millis(TIMEOUT_MS + 600),
                Box::new(MockReply::Raw(
                    200,
                    r#"{"results":[{"actions":[]}]}"#.into(),
                )),
            ),
        ),
        ("hangup", MockReply::Hangup),
    ]
}

struct Setup {
    gateway: Gateway,
    flaky: MockLambda,
    steady: MockLambda,
    _dir: TempDir,
}

impl Setup {
    /// App `flaky` with `on_failure`, [`RETRIES`] and `extra` settings, and
    /// app `steady` with defaults, each on its own mock lambda.
    async fn start(on_failure: &str, extra: &str) -> anyhow::Result<Self> {
        Self::start_with(on_failure, RETRIES, extra).await
    }

    async fn start_with(on_failure: &str, retries: usize, extra: &str) -> anyhow::Result<Self> {
        let dir = TempDir::new("switchboard-lambda-failures")?;
        let flaky = MockLambda::start(healthy()).await?;
        let steady = MockLambda::start(healthy()).await?;
        // Short backoffs unless the test sets its own.
        let backoff = if extra.contains("backoff_ms") {
            ""
        } else {
            "backoff_ms = 20\n"
        };
        let config = write_config(
            &dir,
            &format!(
                "[apps.{APP}]\nlambda = \"{}\"\ntimeout_ms = {TIMEOUT_MS}\nretries = {retries}\n\
                 on_failure = \"{on_failure}\"\n{backoff}{extra}\n\n\
                 [apps.{OTHER}]\nlambda = \"{}\"\n",
                flaky.url(),
                steady.url()
            ),
        )?;
        let gateway = Gateway::start(BIN, &["--config", config.to_str().expect("UTF-8")]).await?;
        Ok(Self {
            gateway,
            flaky,
            steady,
            _dir: dir,
        })
    }

    fn url(&self) -> String {
        self.gateway.http_url()
    }

    async fn viewer(&self, app: &str, topic: &str) -> anyhow::Result<WsClient> {
        let mut ws = WsClient::connect(&self.gateway.ws_url("/v1/ws")).await?;
        let reply = ws.open("s", app, json!({ "topic": topic })).await?;
        assert_eq!(reply["type"], "opened", "{reply}");
        Ok(ws)
    }

    async fn publish(&self, topic: &str, n: u64) -> anyhow::Result<()> {
        publish_many(&self.url(), topic, &[json!({ "n": n })]).await?;
        Ok(())
    }

    async fn metrics(&self) -> anyhow::Result<Metrics> {
        Metrics::fetch(&self.url()).await
    }

    /// Waits until `lambda_gave_up` of `app` reaches `n`.
    async fn gave_up(&self, app: &str, n: f64) -> anyhow::Result<()> {
        wait_app_metric(&self.url(), "lambda_gave_up", app, WAIT, |v| v >= n).await?;
        Ok(())
    }
}

/// The next frame of stream `s` that is not a keepalive.
async fn next(ws: &mut WsClient) -> anyhow::Result<Value> {
    ws.recv_until(|v| v["stream"] == "s" && v["type"] != "ping", WAIT)
        .await
}

/// The next frame is message `n` of `topic`, pushed by the mock.
async fn expect_marked(ws: &mut WsClient, topic: &str, n: u64) -> anyhow::Result<()> {
    let frame = next(ws).await?;
    assert_eq!(frame["type"], "event", "{frame}");
    assert_eq!(frame["event"], "msg", "{frame}");
    assert_eq!(frame["data"]["marked"], "mock", "{frame}");
    assert_eq!(frame["data"]["data"]["n"], n, "{frame}");
    let cursor = frame["id"].as_str().expect("id");
    assert_eq!(cursor_position(cursor, topic), Some(n.to_string()));
    Ok(())
}

/// Message-event requests the mock has received.
fn message_requests(mock: &MockLambda) -> usize {
    mock.requests().iter().filter(|r| has_message(r)).count()
}

#[tokio::test]
async fn every_failure_kind_is_retried_then_dropped() -> anyhow::Result<()> {
    let mut setup = Setup::start("drop", "circuit_failures = 1000").await?;
    let mut ws = setup.viewer(APP, "t").await?;
    let mut n = 1;
    setup.publish("t", n).await?;
    expect_marked(&mut ws, "t", n).await?;

    let mut kinds: Vec<(&str, Option<MockReply>)> =
        failures().into_iter().map(|(k, r)| (k, Some(r))).collect();
    kinds.push(("down", None));
    for (i, (kind, failure)) in kinds.into_iter().enumerate() {
        let before = setup.metrics().await?;
        let requests_before = message_requests(&setup.flaky);
        match failure {
            Some(f) => setup.flaky.set_handler(failing_messages(f)),
            None => setup.flaky.stop(),
        }
        n += 1;
        setup.publish("t", n).await?;
        setup.gave_up(APP, (i + 1) as f64).await?;

        let after = setup.metrics().await?;
        let delta = |name: &str| after.app(name, APP) - before.app(name, APP);
        assert_eq!(delta("lambda_failures"), (RETRIES + 1) as f64, "{kind}");
        assert_eq!(delta("lambda_retries"), RETRIES as f64, "{kind}");
        assert_eq!(delta("lambda_gave_up"), 1.0, "{kind}");
        assert_eq!(delta("drops_lambda_failure"), 1.0, "{kind}");
        let reached = message_requests(&setup.flaky) - requests_before;
        let want = if kind == "down" { 0 } else { RETRIES + 1 };
        assert_eq!(reached, want, "{kind}: requests at the lambda");

        // Back to health: the next message arrives, the failed one never does.
        if kind == "down" {
            setup.flaky.restart().await?;
        }
        setup.flaky.set_handler(healthy());
        n += 1;
        setup.publish("t", n).await?;
        expect_marked(&mut ws, "t", n)
            .await
            .map_err(|e| e.context(format!("after {kind}")))?;
    }
    let m = setup.metrics().await?;
    assert_eq!(m.app("circuit_open", APP), 0.0);
    assert_eq!(m.app("lambda_failures", OTHER), 0.0);
    Ok(())
}

#[tokio::test]
async fn deliver_raw_sends_the_message_as_published() -> anyhow::Result<()> {
    let setup = Setup::start("deliver_raw", "circuit_failures = 1000").await?;
    let mut ws = setup.viewer(APP, "t").await?;
    for (i, (kind, failure)) in failures().into_iter().enumerate() {
        setup.flaky.set_handler(failing_messages(failure));
        let n = i as u64 * 2 + 1;
        setup.publish("t", n).await?;
        let frame = next(&mut ws).await?;
        assert_eq!(frame["type"], "event", "{kind}: {frame}");
        assert!(
            frame.get("event").is_none(),
            "{kind}: raw, unnamed: {frame}"
        );
        assert_eq!(frame["data"], json!({ "n": n }), "{kind}: {frame}");
        let cursor = frame["id"].as_str().expect("id");
        assert_eq!(cursor_position(cursor, "t"), Some(n.to_string()), "{kind}");
        // Every earlier round: its failed attempts, and one good message.
        let want = (i + 1) * (RETRIES + 1) + i;
        assert_eq!(message_requests(&setup.flaky), want, "{kind}");

        setup.flaky.set_handler(healthy());
        setup.publish("t", n + 1).await?;
        expect_marked(&mut ws, "t", n + 1).await?;
    }
    let m = setup.metrics().await?;
    assert_eq!(m.app("lambda_gave_up", APP), failures().len() as f64);
    assert_eq!(
        m.app("drops_lambda_failure", APP),
        0.0,
        "delivered, not dropped"
    );
    Ok(())
}

#[tokio::test]
async fn on_failure_close_ends_the_stream_with_error() -> anyhow::Result<()> {
    let setup = Setup::start("close", "circuit_failures = 1000").await?;
    for (kind, failure) in failures() {
        setup.flaky.set_handler(healthy());
        let mut ws = setup.viewer(APP, "t").await?;
        setup.flaky.set_handler(failing_messages(failure));
        setup.publish("t", 1).await?;
        let closed = ws
            .recv_until(|v| v["type"] == "closed", WAIT)
            .await
            .map_err(|e| e.context(kind))?;
        assert_eq!(closed["stream"], "s", "{kind}: {closed}");
        assert_eq!(closed["code"], 1011, "{kind}: {closed}");
        assert_eq!(closed["reason"], "error", "{kind}: {closed}");
        // The connection stays usable.
        ws.send_json(&json!({"type": "ping"})).await?;
        ws.recv_until(|v| v["type"] == "pong", WAIT).await?;
    }
    // The lambda was told, with reason `error`, once per stream.
    let closes_of = |mock: &MockLambda| -> Vec<Value> {
        mock.events()
            .into_iter()
            .filter(|e| e["type"] == "close")
            .collect()
    };
    let closes = eventually(WAIT, "a close event per stream", || {
        let closes = closes_of(&setup.flaky);
        (closes.len() >= failures().len()).then_some(closes)
    })
    .await?;
    assert_eq!(closes.len(), failures().len(), "{closes:?}");
    assert!(closes.iter().all(|e| e["reason"] == "error"), "{closes:?}");
    let m = setup.metrics().await?;
    assert_eq!(m.app("drops_lambda_failure", APP), failures().len() as f64);
    assert_eq!(m.app("streams", APP), 0.0);
    Ok(())
}

#[tokio::test]
async fn the_circuit_opens_fails_fast_half_opens_and_closes_other_apps_unaffected(
) -> anyhow::Result<()> {
    const COOLDOWN: Duration = Duration::from_millis(1_500);
    let setup = Setup::start_with(
        "drop",
        0,
        &format!(
            "circuit_failures = 3\ncircuit_cooldown_ms = {}",
            COOLDOWN.as_millis()
        ),
    )
    .await?;
    let url = setup.url();
    let mut ws = setup.viewer(APP, "t").await?;
    let mut other = setup.viewer(OTHER, "u").await?;
    // Each failing call waits for the timeout: slow on purpose, so that
    // failing at once is visible.
    let slow = MockReply::Delay(
        Duration::from_millis(TIMEOUT_MS + 600),
        Box::new(MockReply::Raw(
            200,
            r#"{"results":[{"actions":[]}]}"#.into(),
        )),
    );
    setup.flaky.set_handler(failing_messages(slow));

    // Three failures in a row open the circuit.
    for n in 1..=3 {
        setup.publish("t", n).await?;
        setup.gave_up(APP, n as f64).await?;
    }
    assert_eq!(message_requests(&setup.flaky), 3);
    wait_app_metric(&url, "circuit_open", APP, WAIT, |v| v == 1.0).await?;

    // Open: the next event fails at once, and no request reaches the lambda.
    let started = Instant::now();
    setup.publish("t", 4).await?;
    setup.gave_up(APP, 4.0).await?;
    assert!(
        started.elapsed() < Duration::from_millis(TIMEOUT_MS),
        "an open circuit failed after {:?}",
        started.elapsed()
    );
    assert_eq!(
        message_requests(&setup.flaky),
        3,
        "the open circuit let a request through"
    );
    let m = setup.metrics().await?;
    assert_eq!(m.app("circuit_rejections", APP), 1.0);
    assert_eq!(m.app("drops_lambda_failure", APP), 4.0);

    // Meanwhile the other app works as usual.
    for n in 1..=3 {
        setup.publish("u", n).await?;
        expect_marked(&mut other, "u", n).await?;
    }
    assert_eq!(message_requests(&setup.steady), 3);
    let m = setup.metrics().await?;
    for name in [
        "lambda_failures",
        "circuit_rejections",
        "circuit_open",
        "lambda_gave_up",
    ] {
        assert_eq!(m.app(name, OTHER), 0.0, "{name}");
    }

    // After the cooldown: one trial. It fails: open again, at once.
    tokio::time::sleep(COOLDOWN + Duration::from_millis(200)).await;
    setup.publish("t", 5).await?;
    setup.gave_up(APP, 5.0).await?;
    assert_eq!(
        message_requests(&setup.flaky),
        4,
        "exactly one trial request"
    );
    setup.publish("t", 6).await?;
    setup.gave_up(APP, 6.0).await?;
    assert_eq!(
        message_requests(&setup.flaky),
        4,
        "reopened after a failed trial"
    );
    assert_eq!(setup.metrics().await?.app("circuit_open", APP), 1.0);

    // After another cooldown, with the lambda healthy: the trial succeeds and
    // the circuit closes; every later event goes through.
    setup.flaky.set_handler(healthy());
    tokio::time::sleep(COOLDOWN + Duration::from_millis(200)).await;
    for n in 7..=9 {
        setup.publish("t", n).await?;
        expect_marked(&mut ws, "t", n).await?;
    }
    assert_eq!(message_requests(&setup.flaky), 7);
    let m = setup.metrics().await?;
    assert_eq!(m.app("circuit_open", APP), 0.0);
    assert_eq!(m.app("circuit_rejections", APP), 2.0);
    assert_eq!(m.app("lambda_failures", APP), 4.0);
    assert_eq!(m.app("lambda_gave_up", APP), 6.0);
    for name in [
        "lambda_failures",
        "lambda_retries",
        "lambda_gave_up",
        "circuit_open",
        "circuit_rejections",
        "drops_lambda_failure",
    ] {
        assert!(
            m.has(&format!("switchboard_app_{name}{{app=\"{APP}\"}}")),
            "{name}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn retries_back_off_exponentially_with_jitter() -> anyhow::Result<()> {
    const BACKOFF_MS: u64 = 200;
    const TRIES: usize = 4;
    let setup = Setup::start_with(
        "drop",
        TRIES - 1,
        &format!("backoff_ms = {BACKOFF_MS}\ncircuit_failures = 1000"),
    )
    .await?;
    let _ws = setup.viewer(APP, "t").await?;
    setup
        .flaky
        .set_handler(failing_messages(MockReply::Raw(503, "{}".into())));
    let mut first_gaps = Vec::new();
    for n in 1..=3 {
        let skip = setup.flaky.request_count();
        setup.publish("t", n).await?;
        setup.gave_up(APP, n as f64).await?;
        let times: Vec<_> = setup.flaky.timed_requests()[skip..]
            .iter()
            .filter(|(_, r)| has_message(r))
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(times.len(), TRIES, "message {n}");
        for k in 1..TRIES {
            // Retry k waits base * 2^(k-1), times a factor in [0.5, 1.5).
            let gap = times[k] - times[k - 1];
            let exp = Duration::from_millis(BACKOFF_MS << (k - 1));
            assert!(gap >= exp / 2, "message {n}, retry {k}: waited {gap:?}");
            assert!(
                gap < exp * 3 / 2 + Duration::from_millis(300),
                "message {n}, retry {k}: waited {gap:?}"
            );
        }
        first_gaps.push(times[1] - times[0]);
    }
    // Jitter: the same retry does not always wait the same.
    let spread = *first_gaps.iter().max().expect("gaps") - *first_gaps.iter().min().expect("gaps");
    assert!(
        spread > Duration::from_millis(2),
        "no jitter: {first_gaps:?}"
    );
    Ok(())
}

//! Attacks on what streams may follow and how fast they open (issue 11,
//! points 4 and 5), against the real gateway and a lambda in the test
//! (test_support::MockLambda): a direct app beside a lambda app
//! reading or resuming the lambda app's topics, a lambda subscribing
//! outside its app's `topics`, a topic flood in one open, an open flood on
//! one connection. After each, a well-behaved client is still served.

mod edge;

use std::process::Stdio;
use std::sync::Arc;

use serde_json::{json, Value};
use test_support::{
    answer_each, gateway_with_config, publish_many, wait_app_metric, write_config, Metrics,
    MockHandler, MockLambda, MockReply,
};
use test_support::{get, within, Gateway, SseClient, TempDir, WsClient, WAIT};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// A lambda that accepts every open and subscribes the stream (direct
/// delivery) to each topic of `params.subs`, and to each of a client
/// message's `data.subs`.
fn subscribing_lambda() -> MockHandler {
    Arc::new(|req| {
        MockReply::Json(answer_each(req, |e| {
            let (mut actions, subs) = match e["type"].as_str() {
                Some("open") => (vec![json!({"type": "accept"})], &e["params"]["subs"]),
                Some("client_message") => (vec![], &e["data"]["subs"]),
                _ => return vec![],
            };
            let topics = subs.as_array().cloned().unwrap_or_default();
            actions.extend(
                topics
                    .into_iter()
                    .map(|t| json!({"type": "subscribe", "topic": t, "deliver": "direct"})),
            );
            actions
        }))
    })
}

/// A gateway with the lambda app `chat` (bounded by `chat_topics`, a TOML
/// line or "") and the direct app `feed` with `topics = [feed_topics]`.
async fn start(
    dir: &TempDir,
    lambda: &MockLambda,
    chat_topics: &str,
    feed_topics: &str,
) -> anyhow::Result<Gateway> {
    let config = format!(
        "[apps.chat]\nlambda = \"{}\"\n{chat_topics}\n\n\
         [apps.feed]\nlambda = \"direct\"\ntopics = [{feed_topics}]\n",
        lambda.url()
    );
    gateway_with_config(BIN, dir, &config, &[]).await
}

/// `n` distinct topics `t/0`, `t/1`...
fn topics(from: usize, n: usize) -> Vec<String> {
    (from..from + n).map(|i| format!("t/{i}")).collect()
}

/// Opens `stream` on `app` and asserts it opened.
async fn opened(ws: &mut WsClient, stream: &str, app: &str, params: Value) -> anyhow::Result<()> {
    let reply = ws.open(stream, app, params).await?;
    anyhow::ensure!(reply["type"] == "opened", "open refused: {reply}");
    Ok(())
}

/// Asserts a `rejected` frame with `code` and `reason`.
fn assert_rejected(reply: &Value, code: u16, reason: &str) {
    assert_eq!(reply["type"], "rejected", "{reply}");
    assert_eq!(reply["code"], code, "{reply}");
    assert_eq!(reply["reason"], reason, "{reply}");
}

/// The next event frame; its topic must be `topic`.
async fn next_event_on(ws: &mut WsClient, topic: &str) -> anyhow::Result<Value> {
    let event = ws.recv_until(|v| v["type"] == "event", WAIT).await?;
    assert_eq!(event["topic"], topic, "the first event is {event}");
    Ok(event)
}

#[tokio::test]
async fn a_direct_app_without_topics_beside_a_lambda_app_does_not_start() -> anyhow::Result<()> {
    let dir = TempDir::new("attack-streams-refuse")?;
    // The lambda's address is never called: the gateway must not get that far.
    let config = "[apps.chat]\nlambda = \"http://127.0.0.1:9/\"\n\n\
                  [apps.feed]\nlambda = \"direct\"\n";
    let path = write_config(&dir, config)?;
    let child = tokio::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    // Today's main serves this config (and never exits): the wait times out.
    let output = within(WAIT, "the gateway to refuse its config", async {
        Ok(child.wait_with_output().await?)
    })
    .await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("app feed") && stderr.contains("needs `topics`"),
        "a clear message: {stderr}"
    );

    // The bare install's `pubsub` (no lambda app beside it) follows any topic.
    let bare = Gateway::start(BIN, &[]).await?;
    let mut ws = WsClient::connect(&bare.ws_url("/v1/ws")).await?;
    opened(&mut ws, "p", "pubsub", json!({"topic": "anything/at/all"})).await?;
    publish_many(&bare.http_url(), "anything/at/all", &[json!(1)]).await?;
    next_event_on(&mut ws, "anything/at/all").await?;
    Ok(())
}

#[tokio::test]
async fn a_direct_app_cannot_read_or_resume_topics_outside_its_own() -> anyhow::Result<()> {
    let dir = TempDir::new("attack-streams-read")?;
    let lambda = MockLambda::start(subscribing_lambda()).await?;
    let gw = start(&dir, &lambda, "", "\"news\", \"scores/*\"").await?;
    let url = gw.http_url();

    // A reader of an allowed topic; its event gives the broker's epoch.
    let mut reader = WsClient::connect(&gw.ws_url("/v1/ws")).await?;
    opened(&mut reader, "s", "feed", json!({"topic": "scores/1"})).await?;
    publish_many(
        &url,
        "chat/secret",
        &[json!("s1"), json!("s2"), json!("s3")],
    )
    .await?;
    publish_many(&url, "scores/1", &[json!("goal")]).await?;
    let event = next_event_on(&mut reader, "scores/1").await?;
    let cursor = event["id"].as_str().unwrap_or_default();
    let epoch = cursor.split('~').next().unwrap_or_default();
    assert!(!epoch.is_empty(), "an event id carries the epoch: {event}");

    // The attacker names the lambda app's topic, with a cursor from before
    // its history: refused, nothing replayed.
    let mut attacker = WsClient::connect(&gw.ws_url("/v1/ws")).await?;
    let resume = format!("{epoch}~chat/secret~0");
    attacker
        .send_json(&json!({"type": "open", "stream": "a", "app": "feed",
                           "params": {"topic": "chat/secret"}, "resume": resume}))
        .await?;
    assert_rejected(&attacker.open_reply("a").await?, 403, "forbidden_topic");
    // Hidden in a list beside an allowed topic: refused as a whole.
    let reply = attacker
        .open("b", "feed", json!({"topic": "news,chat/secret"}))
        .await?;
    assert_rejected(&reply, 403, "forbidden_topic");
    // Over SSE, resume given as Last-Event-ID.
    let sse_url = gw.url("/v1/sse/feed?topic=chat/secret");
    let mut sse = SseClient::connect(&sse_url, &[("Last-Event-ID", resume.as_str())]).await?;
    assert_eq!(sse.status(), 403);
    let body = sse.body_json(WAIT).await?;
    assert_eq!(body["error"]["reason"], "forbidden_topic", "{body}");

    // The attacker's connection still works for what it may read, and the
    // first event it ever gets is that one: no secret came through.
    opened(&mut attacker, "n", "feed", json!({"topic": "news"})).await?;
    publish_many(&url, "chat/secret", &[json!("s4")]).await?;
    publish_many(&url, "news", &[json!("headline")]).await?;
    let event = next_event_on(&mut attacker, "news").await?;
    assert_eq!(event["data"], "headline");
    // The reader was not disturbed.
    publish_many(&url, "scores/1", &[json!("again")]).await?;
    assert_eq!(
        next_event_on(&mut reader, "scores/1").await?["data"],
        "again"
    );
    let m = Metrics::fetch(&url).await?;
    assert_eq!(
        m.app("subscriptions", "feed"),
        2.0,
        "scores/1 and news only"
    );
    Ok(())
}

#[tokio::test]
async fn a_lambda_subscribe_outside_its_apps_topics_is_counted_and_delivers_nothing(
) -> anyhow::Result<()> {
    let dir = TempDir::new("attack-streams-lambda")?;
    let lambda = MockLambda::start(subscribing_lambda()).await?;
    let gw = start(&dir, &lambda, "topics = [\"room/*\"]", "\"news\"").await?;
    let url = gw.http_url();

    let mut ws = WsClient::connect(&gw.ws_url("/v1/ws")).await?;
    let subs = json!({"subs": ["room/1", "admin/keys"]});
    opened(&mut ws, "c", "chat", subs).await?;
    // A later subscribe outside the topics: invalid too.
    ws.send_json(&json!({"type": "send", "stream": "c", "data": {"subs": ["ops/x"]}}))
        .await?;
    wait_app_metric(&url, "invalid_actions", "chat", WAIT, |v| v >= 2.0).await?;

    publish_many(&url, "admin/keys", &[json!("key")]).await?;
    publish_many(&url, "ops/x", &[json!("op")]).await?;
    publish_many(&url, "room/1", &[json!("hi")]).await?;
    assert_eq!(next_event_on(&mut ws, "room/1").await?["data"], "hi");
    let m = Metrics::fetch(&url).await?;
    assert_eq!(m.app("invalid_actions", "chat"), 2.0);
    assert_eq!(m.app("subscriptions", "chat"), 1.0, "room/1 only");
    Ok(())
}

#[tokio::test]
async fn a_topic_flood_is_rejected_naming_the_limit() -> anyhow::Result<()> {
    let dir = TempDir::new("attack-streams-topics")?;
    let lambda = MockLambda::start(subscribing_lambda()).await?;
    let gw = start(&dir, &lambda, "", "\"t/*\"").await?;
    let url = gw.http_url();
    let flood = topics(0, 200);

    // A direct open with 200 topics, over WebSocket and SSE.
    let mut ws = WsClient::connect(&gw.ws_url("/v1/ws")).await?;
    let reply = ws
        .open("d", "feed", json!({"topic": flood.join(",")}))
        .await?;
    assert_rejected(&reply, 400, "too_many_topics");
    let sse_url = gw.url(&format!("/v1/sse/feed?topic={}", flood.join(",")));
    let mut sse = SseClient::connect(&sse_url, &[]).await?;
    assert_eq!(sse.status(), 400);
    assert_eq!(
        sse.body_json(WAIT).await?["error"]["reason"],
        "too_many_topics"
    );

    // A lambda's open answer subscribing 200.
    let reply = ws.open("l", "chat", json!({ "subs": flood })).await?;
    assert_rejected(&reply, 400, "too_many_topics");
    assert_eq!(Metrics::fetch(&url).await?.app("streams", "chat"), 0.0);

    // 100 at the open, then 100 more: the stream stops at 128, 72 invalid.
    opened(&mut ws, "m", "chat", json!({ "subs": topics(0, 100) })).await?;
    let more = json!({"type": "send", "stream": "m", "data": {"subs": topics(100, 100)}});
    ws.send_json(&more).await?;
    wait_app_metric(&url, "invalid_actions", "chat", WAIT, |v| v >= 73.0).await?;
    let m = Metrics::fetch(&url).await?;
    assert_eq!(
        m.app("invalid_actions", "chat"),
        73.0,
        "the open's answer, then 72"
    );
    assert_eq!(m.app("subscriptions", "chat"), 128.0);

    // A well-behaved client on both apps.
    let mut fine = WsClient::connect(&gw.ws_url("/v1/ws")).await?;
    opened(&mut fine, "f", "feed", json!({"topic": "t/5"})).await?;
    opened(&mut fine, "g", "chat", json!({"subs": ["t/6"]})).await?;
    publish_many(&url, "t/5", &[json!(5)]).await?;
    next_event_on(&mut fine, "t/5").await?;
    publish_many(&url, "t/6", &[json!(6)]).await?;
    next_event_on(&mut fine, "t/6").await?;
    Ok(())
}

#[tokio::test]
async fn an_open_flood_gets_429_open_rate_while_another_connection_opens_fine() -> anyhow::Result<()>
{
    let gw = Gateway::start(BIN, &[]).await?;
    const OPENS: usize = 500;
    let mut flood = WsClient::connect(&gw.ws_url("/v1/ws")).await?;
    for i in 0..OPENS {
        let s = format!("s{i}");
        flood
            .send_json(
                &json!({"type": "open", "stream": s, "app": "pubsub", "params": {"topic": "f"}}),
            )
            .await?;
        flood
            .send_json(&json!({"type": "close", "stream": s}))
            .await?;
    }
    let (mut opened_n, mut limited) = (0, 0);
    for _ in 0..OPENS {
        let reply = flood
            .recv_until(|v| v["type"] == "opened" || v["type"] == "rejected", WAIT)
            .await?;
        if reply["type"] == "opened" {
            opened_n += 1;
        } else {
            assert_rejected(&reply, 429, "open_rate");
            limited += 1;
        }
    }
    // At least the burst (50) opened; the machine would have to stall for
    // seconds for no open to be over the rate.
    assert!(opened_n >= 50, "{opened_n} opened");
    assert!(limited > 0, "{opened_n} opened, none limited");

    let mut other = WsClient::connect(&gw.ws_url("/v1/ws")).await?;
    opened(&mut other, "o", "pubsub", json!({"topic": "f"})).await?;
    publish_many(&gw.http_url(), "f", &[json!("ok")]).await?;
    assert_eq!(next_event_on(&mut other, "f").await?["data"], "ok");
    assert_eq!(get(&gw.url("/healthz")).await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn an_open_past_the_stream_limit_is_rejected_naming_the_limit() -> anyhow::Result<()> {
    let edge = edge::EdgeGateway::start("[limits]\nmax_streams_per_connection = 2").await?;
    let gw = &edge.gateway;
    let mut ws = WsClient::connect(&gw.ws_url("/v1/ws")).await?;
    for name in ["a", "b"] {
        let reply = ws.open(name, "pubsub", json!({"topic": "calm"})).await?;
        assert_eq!(reply["type"], "opened", "{reply}");
    }
    let reply = ws.open("c", "pubsub", json!({"topic": "calm"})).await?;
    assert_eq!(reply["type"], "rejected", "{reply}");
    assert_eq!(reply["code"], 400, "{reply}");
    assert_eq!(reply["reason"], "too_many_streams", "{reply}");
    // The two open streams go on, and so does another connection.
    let mut other = edge::subscriber(gw, "calm").await?;
    edge::still_serves(gw, None, &mut other, "calm", 1).await?;
    for name in ["a", "b"] {
        let ev = ws
            .recv_until(|v| v["stream"] == name && v["type"] == "event", WAIT)
            .await?;
        assert_eq!(ev["data"]["n"], 1, "{ev}");
    }
    Ok(())
}

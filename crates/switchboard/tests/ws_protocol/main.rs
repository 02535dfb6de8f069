//! The plain client protocol (PROTOCOL.md) against the real gateway with
//! direct apps (no lambda): WebSocket frames and limits, SSE, the publish API,
//! resume, and how a missing or broken lambda shows to clients.

use std::time::Duration;

use serde_json::{json, Value};
use test_support::{
    cursor_position, free_port, php_script, publish, publish_raw, Gateway, PhpServer, SseClient,
    WsClient, WAIT,
};

mod broken_lambda;
mod publish;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
/// A lambda may be retried before an open is rejected: allow for it.
const LAMBDA_WAIT: Duration = Duration::from_secs(30);

/// A gateway with only the default direct app `pubsub`.
async fn pubsub() -> anyhow::Result<Gateway> {
    Gateway::start(BIN, &[]).await
}

async fn ws(gateway: &Gateway) -> anyhow::Result<WsClient> {
    WsClient::connect(&gateway.ws_url("/v1/ws")).await
}

/// Opens `stream` on the direct app `pubsub` following `topics` (comma-separated).
async fn open_topics(ws: &mut WsClient, stream: &str, topics: &str) -> anyhow::Result<()> {
    let reply = ws
        .open(stream, "pubsub", json!({ "topic": topics }))
        .await?;
    assert_eq!(reply["type"], "opened", "{reply}");
    Ok(())
}

async fn publish_ok(gateway: &Gateway, topic: &str, data: Value) -> anyhow::Result<String> {
    let (status, body) = publish(
        &gateway.http_url(),
        None,
        &json!({ "topic": topic, "data": data }),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    Ok(body["id"].as_str().expect("id").to_owned())
}

/// The next frame that is not a keepalive, which must be an `error`.
async fn expect_error(ws: &mut WsClient) -> anyhow::Result<Value> {
    let frame = ws.recv_json_skip_pings(WAIT).await?;
    assert_eq!(frame["type"], "error", "{frame}");
    assert!(frame["code"].is_string(), "{frame}");
    Ok(frame)
}

async fn expect_pong(ws: &mut WsClient) -> anyhow::Result<()> {
    ws.send_json(&json!({"type": "ping"})).await?;
    let frame = ws.recv_json_skip_pings(WAIT).await?;
    assert_eq!(frame, json!({"type": "pong"}));
    Ok(())
}

/// An error body as PROTOCOL.md gives it: `{"error":{"code":...,"message":...}}`.
fn assert_error_body(body: &Value) {
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

// ---- WebSocket frames -------------------------------------------------------

#[tokio::test]
async fn ping_gets_pong() -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let mut ws = ws(&gateway).await?;
    expect_pong(&mut ws).await?;
    expect_pong(&mut ws).await
}

#[tokio::test]
async fn streams_are_multiplexed_on_one_connection() -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let mut ws = ws(&gateway).await?;
    open_topics(&mut ws, "c1", "news").await?;
    open_topics(&mut ws, "c2", "sport").await?;
    open_topics(&mut ws, "both", "news,sport").await?;

    let news_id = publish_ok(&gateway, "news", json!({"headline": 1})).await?;
    let sport_id = publish_ok(&gateway, "sport", json!({"score": [2, 1]})).await?;

    let mut seen = Vec::new();
    while seen.len() < 4 {
        let frame = ws.recv_until(|v| v["type"] == "event", WAIT).await?;
        assert!(
            frame.get("event").is_none(),
            "direct events are unnamed: {frame}"
        );
        let topic = frame["topic"].as_str().expect("topic").to_owned();
        let (data, id) = match topic.as_str() {
            "news" => (json!({"headline": 1}), &news_id),
            "sport" => (json!({"score": [2, 1]}), &sport_id),
            other => panic!("unexpected topic {other}"),
        };
        assert_eq!(frame["data"], data, "{frame}");
        let cursor = frame["id"].as_str().expect("cursor");
        assert_eq!(
            cursor_position(cursor, &topic).as_ref(),
            Some(id),
            "{frame}"
        );
        seen.push((frame["stream"].as_str().expect("stream").to_owned(), topic));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("both".to_owned(), "news".to_owned()),
            ("both".to_owned(), "sport".to_owned()),
            ("c1".to_owned(), "news".to_owned()),
            ("c2".to_owned(), "sport".to_owned()),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn a_second_open_with_a_live_name_gets_stream_exists() -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let mut ws = ws(&gateway).await?;
    open_topics(&mut ws, "c1", "news").await?;

    ws.send_json(
        &json!({"type": "open", "stream": "c1", "app": "pubsub", "params": {"topic": "other"}}),
    )
    .await?;
    let error = expect_error(&mut ws).await?;
    assert_eq!(error["code"], "stream_exists", "{error}");
    assert_eq!(error["stream"], "c1", "{error}");

    // The first stream is untouched.
    publish_ok(&gateway, "news", json!(1)).await?;
    let frame = ws.recv_until(|v| v["type"] == "event", WAIT).await?;
    assert_eq!(frame["stream"], "c1", "{frame}");
    assert_eq!(frame["topic"], "news", "{frame}");
    Ok(())
}

#[tokio::test]
async fn frames_for_an_unknown_stream_get_unknown_stream() -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let mut ws = ws(&gateway).await?;

    ws.send_json(&json!({"type": "send", "stream": "nope", "data": {}}))
        .await?;
    let error = expect_error(&mut ws).await?;
    assert_eq!(error["code"], "unknown_stream", "{error}");
    assert_eq!(error["stream"], "nope", "{error}");

    ws.send_json(&json!({"type": "close", "stream": "nope"}))
        .await?;
    let error = expect_error(&mut ws).await?;
    assert_eq!(error["code"], "unknown_stream", "{error}");
    expect_pong(&mut ws).await
}

#[tokio::test]
async fn a_client_close_gets_closed_1000_and_frees_the_name() -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let mut ws = ws(&gateway).await?;
    open_topics(&mut ws, "c1", "news").await?;

    ws.send_json(&json!({"type": "close", "stream": "c1"}))
        .await?;
    let closed = ws.recv_until(|v| v["type"] == "closed", WAIT).await?;
    assert_eq!(closed["stream"], "c1", "{closed}");
    assert_eq!(closed["code"], 1000, "{closed}");

    open_topics(&mut ws, "c1", "sport").await?;
    publish_ok(&gateway, "sport", json!("again")).await?;
    let frame = ws.recv_until(|v| v["type"] == "event", WAIT).await?;
    assert_eq!(frame["stream"], "c1", "{frame}");
    assert_eq!(frame["data"], "again", "{frame}");
    Ok(())
}

#[tokio::test]
async fn malformed_frames_get_errors_and_the_connection_stays_usable() -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let mut ws = ws(&gateway).await?;

    ws.send_text("this is not json").await?;
    let error = expect_error(&mut ws).await?;
    assert_eq!(error["code"], "bad_frame", "{error}");
    assert!(error["stream"].is_null(), "{error}");

    for bad in [
        "[1,2,3]",
        r#"{"type":"no_such_type"}"#,
        r#"{"type":"open"}"#,
        r#"{"stream":"c1"}"#,
    ] {
        ws.send_text(bad).await?;
        expect_error(&mut ws).await?;
    }

    expect_pong(&mut ws).await?;
    open_topics(&mut ws, "c1", "news").await?;
    publish_ok(&gateway, "news", json!({"ok": true})).await?;
    let frame = ws.recv_until(|v| v["type"] == "event", WAIT).await?;
    assert_eq!(frame["data"], json!({"ok": true}), "{frame}");
    Ok(())
}

#[tokio::test]
async fn ten_bad_frames_within_a_minute_close_with_1008() -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let mut ws = ws(&gateway).await?;

    for _ in 0..9 {
        ws.send_text("not json").await?;
        expect_error(&mut ws).await?;
    }
    // Nine are tolerated.
    expect_pong(&mut ws).await?;

    ws.send_text("not json").await?;
    // If the tenth does not close the connection, an eleventh surely must;
    // a failed send just means the server has closed already.
    let _ = ws.send_text("not json").await;
    assert_eq!(ws.recv_close(WAIT).await?, Some(1008));
    Ok(())
}

#[tokio::test]
async fn a_frame_over_64_kib_closes_with_1009() -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let mut ws = ws(&gateway).await?;
    open_topics(&mut ws, "c1", "news").await?;

    let big = json!({"type": "send", "stream": "c1", "data": "x".repeat(64 * 1024 + 16)});
    ws.send_json(&big).await?;
    assert_eq!(ws.recv_close(WAIT).await?, Some(1009));
    Ok(())
}

#[tokio::test]
async fn an_unknown_app_is_rejected_with_404() -> anyhow::Result<()> {
    let gateway = pubsub().await?;

    let mut ws = ws(&gateway).await?;
    let reply = ws.open("c1", "no_such_app", json!({})).await?;
    assert_eq!(reply["type"], "rejected", "{reply}");
    assert_eq!(reply["code"], 404, "{reply}");
    expect_pong(&mut ws).await?;

    let mut sse = SseClient::connect(&gateway.url("/v1/sse/no_such_app?topic=x"), &[]).await?;
    assert_eq!(sse.status(), 404);
    let body = sse.body_json(WAIT).await?;
    assert!(body["error"]["code"].is_string(), "{body}");
    assert_eq!(body["error"]["status"], 404, "{body}");

    // Through the shortcut: `rejected`, then close 1008.
    let mut ws = WsClient::connect(&gateway.ws_url("/v1/ws?app=no_such_app")).await?;
    let reply = ws.open_reply("0").await?;
    assert_eq!(reply["type"], "rejected", "{reply}");
    assert_eq!(reply["code"], 404, "{reply}");
    assert_eq!(ws.recv_close(WAIT).await?, Some(1008));
    Ok(())
}

#[tokio::test]
async fn a_named_direct_app_subscribes_params_topic() -> anyhow::Result<()> {
    let gateway = Gateway::start(BIN, &["--app", "chat=direct"]).await?;
    let mut ws = WsClient::connect(&gateway.ws_url("/v1/ws?app=chat&topic=room/1")).await?;
    let reply = ws.open_reply("0").await?;
    assert_eq!(reply["type"], "opened", "{reply}");

    let id = publish_ok(&gateway, "room/1", json!({"say": "hi"})).await?;
    let frame = ws.recv_until(|v| v["type"] == "event", WAIT).await?;
    assert_eq!(frame["stream"], "0", "{frame}");
    assert_eq!(frame["topic"], "room/1", "{frame}");
    assert_eq!(frame["data"], json!({"say": "hi"}), "{frame}");
    let cursor = frame["id"].as_str().expect("cursor");
    assert_eq!(cursor_position(cursor, "room/1"), Some(id));
    Ok(())
}

// ---- Resume -----------------------------------------------------------------

#[tokio::test]
async fn resume_replays_after_the_cursor_then_goes_live() -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let mut ws = ws(&gateway).await?;
    open_topics(&mut ws, "c1", "news").await?;
    publish_ok(&gateway, "news", json!(1)).await?;
    let first = ws.recv_until(|v| v["type"] == "event", WAIT).await?;
    let cursor = first["id"].as_str().expect("cursor").to_owned();
    ws.close().await?;

    publish_ok(&gateway, "news", json!(2)).await?;
    publish_ok(&gateway, "news", json!(3)).await?;

    let mut ws = self::ws(&gateway).await?;
    ws.send_json(&json!({
        "type": "open", "stream": "r", "app": "pubsub",
        "params": {"topic": "news"}, "resume": cursor,
    }))
    .await?;
    let reply = ws.open_reply("r").await?;
    assert_eq!(reply["type"], "opened", "{reply}");
    for n in [2, 3] {
        let frame = ws.recv_until(|v| v["type"] == "event", WAIT).await?;
        assert_eq!(frame["data"], n, "{frame}");
    }
    publish_ok(&gateway, "news", json!(4)).await?;
    let frame = ws.recv_until(|v| v["type"] == "event", WAIT).await?;
    assert_eq!(frame["data"], 4, "no gap, no duplicate: {frame}");
    Ok(())
}

// ---- SSE --------------------------------------------------------------------

#[tokio::test]
async fn sse_on_a_direct_app_gets_id_and_data() -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let mut sse = SseClient::connect(&gateway.url("/v1/sse/pubsub?topic=news"), &[]).await?;
    assert_eq!(sse.status(), 200);
    assert!(
        sse.header("content-type")
            .is_some_and(|ct| ct.starts_with("text/event-stream")),
        "{:?}",
        sse.headers()
    );

    let data = json!({"hello": 1, "list": [true, null, "é"]});
    let id = publish_ok(&gateway, "news", data.clone()).await?;
    let event = sse.next_event(WAIT).await?;
    assert_eq!(event.event, None, "{event:?}");
    assert_eq!(event.json()?, data);
    let cursor = event.id.as_deref().expect("id:");
    assert_eq!(cursor_position(cursor, "news"), Some(id));

    // `?resume=` replays from a cursor, like Last-Event-ID.
    publish_ok(&gateway, "news", json!("second")).await?;
    let url = gateway.url(&format!("/v1/sse/pubsub?topic=news&resume={cursor}"));
    let mut resumed = SseClient::connect(&url, &[]).await?;
    assert_eq!(resumed.status(), 200);
    let event = resumed.next_event(WAIT).await?;
    assert_eq!(event.json()?, json!("second"));
    Ok(())
}

// ---- Shutdown ---------------------------------------------------------------

/// A signal sent the moment the ready line appears drains, not kills: the
/// handlers are installed before the line is printed.
#[tokio::test]
async fn sigterm_at_the_ready_line_drains_and_exits_0() -> anyhow::Result<()> {
    let mut gateway = pubsub().await?;
    gateway.signal("TERM")?;
    let status = gateway.wait_exit(Duration::from_secs(30)).await?;
    assert!(status.success(), "{status}");
    Ok(())
}

#[tokio::test]
async fn sigterm_closes_clients_with_1012_and_exits_0() -> anyhow::Result<()> {
    let mut gateway = pubsub().await?;
    let mut ws = ws(&gateway).await?;
    open_topics(&mut ws, "c1", "news").await?;
    let mut sse = SseClient::connect(&gateway.url("/v1/sse/pubsub?topic=news"), &[]).await?;
    assert_eq!(sse.status(), 200);

    gateway.signal("TERM")?;

    assert_eq!(ws.recv_close(WAIT).await?, Some(1012));
    test_support::expect_sse_closed(&mut sse, 1012).await?;
    let status = gateway.wait_exit(Duration::from_secs(30)).await?;
    assert!(status.success(), "{status}");
    Ok(())
}

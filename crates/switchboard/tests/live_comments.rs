//! Live video comments end to end, as in the BladeRunner design: the real
//! gateway, a real PHP lambda (`php -S tests/php/live_comments.php`), viewers
//! over WebSocket and SSE, and publishers through `POST /v1/publish`.

use serde_json::{json, Value};
use std::time::Duration;

use test_support::{
    cursor_position, eventually, php_script, publish, within, Gateway, LoggingPhp, PhpServer,
    SseClient, WsClient, WAIT,
};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
const APP: &str = "live_comments";

fn comment_topic(video: &str) -> String {
    format!("live_video_comment/{video}")
}

fn reaction_topic(video: &str) -> String {
    format!("live_video_reaction/{video}")
}

/// A gateway whose app `live_comments` is served by the PHP lambda, which logs
/// every event it is given to a file in a temp dir.
struct LiveComments {
    gateway: Gateway,
    lambda: LoggingPhp,
}

impl LiveComments {
    async fn start() -> anyhow::Result<Self> {
        let lambda =
            LoggingPhp::start("switchboard-live-comments", "live_comments.php", &[]).await?;
        let app = format!("{APP}={}", lambda.url());
        let gateway = Gateway::start(BIN, &["--app", &app]).await?;
        Ok(Self { gateway, lambda })
    }

    async fn ws(&self) -> anyhow::Result<WsClient> {
        WsClient::connect(&self.gateway.ws_url("/v1/ws")).await
    }

    /// A WebSocket with stream `stream` opened on `video`.
    async fn viewer(&self, stream: &str, video: &str) -> anyhow::Result<WsClient> {
        let mut ws = self.ws().await?;
        let reply = ws.open(stream, APP, json!({ "video": video })).await?;
        assert_eq!(reply["type"], "opened", "{reply}");
        Ok(ws)
    }

    /// Publishes one message; returns its id.
    async fn publish(&self, topic: &str, data: Value) -> anyhow::Result<String> {
        let (status, body) = publish(
            &self.gateway.http_url(),
            None,
            &json!({ "topic": topic, "data": data }),
        )
        .await?;
        assert_eq!(status, 200, "{body}");
        Ok(body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {body}"))
            .to_owned())
    }

    /// The events the lambda has been given so far, one JSON object each.
    fn lambda_log(&self) -> Vec<Value> {
        std::fs::read_to_string(self.lambda.log_path())
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("lambda log line is JSON"))
            .collect()
    }

    /// Lambda events of kind `message` or `batch` that carried `topic`.
    fn lambda_calls_for(&self, topic: &str) -> usize {
        self.lambda_log()
            .iter()
            .filter(|e| {
                e["topic"] == topic
                    || e["topics"]
                        .as_array()
                        .is_some_and(|ts| ts.iter().any(|t| t == topic))
            })
            .count()
    }
}

/// Next `event` frame of `stream`, skipping anything else.
async fn next_event(ws: &mut WsClient, stream: &str) -> anyhow::Result<Value> {
    ws.recv_until(|v| v["type"] == "event" && v["stream"] == stream, WAIT)
        .await
}

/// Checks a transformed comment as the PHP lambda builds it.
fn assert_comment(frame_data: &Value, text: &str, count: u64, video: &str) {
    assert_eq!(frame_data["text"], text, "{frame_data}");
    assert_eq!(frame_data["by"], "php", "{frame_data}");
    assert_eq!(frame_data["count"], count, "{frame_data}");
    assert_eq!(frame_data["video"], video, "{frame_data}");
    assert_eq!(frame_data["topic"], comment_topic(video), "{frame_data}");
}

#[tokio::test]
async fn unknown_video_is_rejected_with_404_over_websocket() -> anyhow::Result<()> {
    let live = LiveComments::start().await?;
    let mut ws = live.ws().await?;

    let reply = ws.open("c1", APP, json!({"video": "999"})).await?;
    assert_eq!(reply["type"], "rejected", "{reply}");
    assert_eq!(reply["code"], 404, "{reply}");
    assert!(reply["reason"].is_string(), "{reply}");

    // The connection is still usable, and so is the stream name.
    let reply = ws.open("c1", APP, json!({"video": "1234"})).await?;
    assert_eq!(reply["type"], "opened", "{reply}");
    Ok(())
}

#[tokio::test]
async fn unknown_video_is_rejected_with_http_404_over_sse() -> anyhow::Result<()> {
    let live = LiveComments::start().await?;
    let url = live.gateway.url(&format!("/v1/sse/{APP}?video=999"));
    let mut sse = SseClient::connect(&url, &[]).await?;

    assert_eq!(sse.status(), 404);
    assert!(
        sse.header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json")),
        "{:?}",
        sse.headers()
    );
    let body = sse.body_json(WAIT).await?;
    assert_eq!(body["error"]["code"], "rejected", "{body}");
    assert_eq!(body["error"]["status"], 404, "{body}");
    assert!(body["error"]["reason"].is_string(), "{body}");
    Ok(())
}

#[tokio::test]
async fn comments_arrive_transformed_by_php_with_a_running_count() -> anyhow::Result<()> {
    let live = LiveComments::start().await?;
    let mut ws = live.viewer("c1", "1234").await?;
    let topic = comment_topic("1234");

    let mut ids = Vec::new();
    for n in 1..=3 {
        ids.push(
            live.publish(&topic, json!({"text": format!("<b>hi {n}</b> & \"you\"")}))
                .await?,
        );
    }
    for (n, id) in (1..=3).zip(&ids) {
        let frame = next_event(&mut ws, "c1").await?;
        assert_eq!(frame["event"], "comment", "{frame}");
        assert_comment(
            &frame["data"],
            &format!("&lt;b&gt;hi {n}&lt;/b&gt; &amp; &quot;you&quot;"),
            n,
            "1234",
        );
        // The lambda saw the broker's message id; the client gets the cursor.
        assert_eq!(frame["data"]["message_id"], id.as_str(), "{frame}");
        let cursor = frame["id"]
            .as_str()
            .expect("a pushed comment carries a cursor");
        assert_eq!(
            cursor_position(cursor, &topic).as_deref(),
            Some(id.as_str())
        );
    }

    // Sequence numbers per topic, starting at 1.
    assert_eq!(ids, ["1", "2", "3"]);
    assert_eq!(live.lambda_calls_for(&topic), 3);
    Ok(())
}

#[tokio::test]
async fn reactions_arrive_untouched_without_a_lambda_call() -> anyhow::Result<()> {
    let live = LiveComments::start().await?;
    let mut ws = live.viewer("c1", "42").await?;
    let reactions = reaction_topic("42");
    let comments = comment_topic("42");

    let reaction = json!({"kind": "love", "n": [1, 2.5, {"x": null}], "html": "<b>&</b>"});
    let reaction_id = live.publish(&reactions, reaction.clone()).await?;
    let frame = next_event(&mut ws, "c1").await?;
    assert_eq!(frame["data"], reaction, "{frame}");
    assert_eq!(frame["topic"], reactions.as_str(), "{frame}");
    assert!(
        frame.get("event").is_none(),
        "direct events have no name: {frame}"
    );
    let cursor = frame["id"]
        .as_str()
        .expect("a direct event carries a cursor");
    assert_eq!(
        cursor_position(cursor, &reactions).as_deref(),
        Some(reaction_id.as_str())
    );

    // A comment after it goes through the lambda, and its count shows that
    // the reaction never reached the stream's state.
    live.publish(&comments, json!({"text": "after"})).await?;
    let frame = next_event(&mut ws, "c1").await?;
    assert_eq!(frame["event"], "comment", "{frame}");
    assert_comment(&frame["data"], "after", 1, "42");

    assert_eq!(
        live.lambda_calls_for(&reactions),
        0,
        "{:?}",
        live.lambda_log()
    );
    assert_eq!(
        live.lambda_calls_for(&comments),
        1,
        "{:?}",
        live.lambda_log()
    );
    Ok(())
}

#[tokio::test]
async fn a_client_send_is_published_by_the_lambda_to_every_viewer() -> anyhow::Result<()> {
    let live = LiveComments::start().await?;
    let mut alice = live.viewer("a", "7").await?;
    let mut bob = live.viewer("b", "7").await?;
    let mut carol = live.viewer("c", "1234").await?;

    alice
        .send_json(&json!({"type": "send", "stream": "a", "data": {"text": "hello <all>"}}))
        .await?;

    for (ws, stream) in [(&mut alice, "a"), (&mut bob, "b")] {
        let frame = next_event(ws, stream).await?;
        assert_eq!(frame["event"], "comment", "{frame}");
        assert_comment(&frame["data"], "hello &lt;all&gt;", 1, "7");
    }

    // Another video's viewer did not get it: its first event is its own.
    live.publish(&comment_topic("1234"), json!({"text": "elsewhere"}))
        .await?;
    let frame = next_event(&mut carol, "c").await?;
    assert_comment(&frame["data"], "elsewhere", 1, "1234");

    let log = live.lambda_log();
    assert_eq!(
        log.iter().filter(|e| e["type"] == "client_message").count(),
        1,
        "{log:?}"
    );
    Ok(())
}

/// docs/fuzzing.md, finding 1: `send` data a strict JSON reader cannot read
/// gets `bad_frame` and never reaches the lambda (where it would share a
/// batched request with other streams' events); the stream stays open.
#[tokio::test]
async fn a_send_with_a_number_outside_f64_is_a_bad_frame() -> anyhow::Result<()> {
    let live = LiveComments::start().await?;
    let mut alice = live.viewer("a", "7").await?;
    let mut bob = live.viewer("b", "7").await?;

    alice
        .send_text(r#"{"type":"send","stream":"a","data":{"text":"big","n":1e999}}"#)
        .await?;
    let error = alice.recv_until(|v| v["type"] == "error", WAIT).await?;
    assert_eq!(error["code"], "bad_frame", "{error}");
    assert_eq!(error["stream"], "a", "{error}");

    alice
        .send_json(&json!({"type": "send", "stream": "a", "data": {"text": "fine"}}))
        .await?;
    for (ws, stream) in [(&mut alice, "a"), (&mut bob, "b")] {
        let frame = next_event(ws, stream).await?;
        assert_comment(&frame["data"], "fine", 1, "7");
    }
    let log = live.lambda_log();
    assert_eq!(
        log.iter().filter(|e| e["type"] == "client_message").count(),
        1,
        "{log:?}"
    );
    Ok(())
}

#[tokio::test]
async fn the_lambda_closes_the_stream_with_its_own_code() -> anyhow::Result<()> {
    let live = LiveComments::start().await?;
    let mut ws = live.viewer("c1", "1234").await?;
    let reply = ws.open("c2", APP, json!({"video": "42"})).await?;
    assert_eq!(reply["type"], "opened", "{reply}");

    ws.send_json(&json!({"type": "send", "stream": "c1", "data": {"cmd": "bye"}}))
        .await?;
    let closed = ws
        .recv_until(|v| v["type"] == "closed" && v["stream"] == "c1", WAIT)
        .await?;
    assert_eq!(closed["code"], 4001, "{closed}");
    assert_eq!(closed["reason"], "bye", "{closed}");

    // The lambda hears that its stream ended, because of itself.
    eventually(WAIT, "a close event with reason lambda", || {
        live.lambda_log()
            .into_iter()
            .find(|e| e["type"] == "close" && e["reason"] == "lambda")
    })
    .await?;

    // The other stream on the connection lives on; the closed one is gone.
    live.publish(&comment_topic("42"), json!({"text": "still here"}))
        .await?;
    let frame = next_event(&mut ws, "c2").await?;
    assert_comment(&frame["data"], "still here", 1, "42");
    ws.send_json(&json!({"type": "send", "stream": "c1", "data": {"text": "x"}}))
        .await?;
    let error = ws.recv_until(|v| v["type"] == "error", WAIT).await?;
    assert_eq!(error["code"], "unknown_stream", "{error}");
    assert_eq!(error["stream"], "c1", "{error}");
    Ok(())
}

#[tokio::test]
async fn a_client_close_is_confirmed_and_told_to_the_lambda() -> anyhow::Result<()> {
    let live = LiveComments::start().await?;
    let mut ws = live.viewer("c1", "1234").await?;

    ws.send_json(&json!({"type": "close", "stream": "c1"}))
        .await?;
    let closed = ws
        .recv_until(|v| v["type"] == "closed" && v["stream"] == "c1", WAIT)
        .await?;
    assert_eq!(closed["code"], 1000, "{closed}");
    eventually(WAIT, "a close event with reason client", || {
        live.lambda_log()
            .into_iter()
            .find(|e| e["type"] == "close" && e["reason"] == "client")
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn the_app_query_shortcut_opens_stream_zero() -> anyhow::Result<()> {
    let live = LiveComments::start().await?;
    let mut ws =
        WsClient::connect(&live.gateway.ws_url(&format!("/v1/ws?app={APP}&video=1234"))).await?;
    let reply = ws.open_reply("0").await?;
    assert_eq!(reply["type"], "opened", "{reply}");

    live.publish(&comment_topic("1234"), json!({"text": "via shortcut"}))
        .await?;
    let frame = next_event(&mut ws, "0").await?;
    assert_eq!(frame["event"], "comment", "{frame}");
    assert_comment(&frame["data"], "via shortcut", 1, "1234");

    // Rejected through the shortcut: the `rejected` frame, then close 1008.
    let mut ws =
        WsClient::connect(&live.gateway.ws_url(&format!("/v1/ws?app={APP}&video=999"))).await?;
    let reply = ws.open_reply("0").await?;
    assert_eq!(reply["type"], "rejected", "{reply}");
    assert_eq!(reply["code"], 404, "{reply}");
    assert_eq!(ws.recv_close(WAIT).await?, Some(1008));
    Ok(())
}

#[tokio::test]
async fn the_same_flow_over_sse() -> anyhow::Result<()> {
    let live = LiveComments::start().await?;
    let url = live.gateway.url(&format!("/v1/sse/{APP}?video=1234"));
    let mut sse = SseClient::connect(&url, &[]).await?;
    assert_eq!(sse.status(), 200);
    assert!(
        sse.header("content-type")
            .is_some_and(|ct| ct.starts_with("text/event-stream")),
        "{:?}",
        sse.headers()
    );
    let comments = comment_topic("1234");
    let reactions = reaction_topic("1234");

    // A comment, transformed by PHP, named `comment`.
    let id = live
        .publish(&comments, json!({"text": "<i>first</i>"}))
        .await?;
    let event = sse.next_event(WAIT).await?;
    assert_eq!(event.event.as_deref(), Some("comment"), "{event:?}");
    assert_comment(&event.json()?, "&lt;i&gt;first&lt;/i&gt;", 1, "1234");
    let cursor = event.id.as_deref().expect("a pushed comment carries id:");
    assert_eq!(
        cursor_position(cursor, &comments).as_deref(),
        Some(id.as_str())
    );

    // A reaction, direct and untouched, unnamed.
    let reaction = json!({"kind": "wow", "at": [0, 1.5]});
    let id = live.publish(&reactions, reaction.clone()).await?;
    let event = sse.next_event(WAIT).await?;
    assert_eq!(event.event, None, "{event:?}");
    assert_eq!(event.json()?, reaction);
    let cursor = event.id.as_deref().expect("a direct event carries id:");
    assert_eq!(
        cursor_position(cursor, &reactions).as_deref(),
        Some(id.as_str())
    );
    assert_eq!(
        live.lambda_calls_for(&reactions),
        0,
        "{:?}",
        live.lambda_log()
    );

    // A WebSocket viewer's send reaches the SSE viewer, and the count is the
    // SSE stream's own (its state persisted between events).
    let mut ws = live.viewer("w", "1234").await?;
    ws.send_json(&json!({"type": "send", "stream": "w", "data": {"text": "from ws"}}))
        .await?;
    let event = sse.next_event(WAIT).await?;
    assert_eq!(event.event.as_deref(), Some("comment"), "{event:?}");
    assert_comment(&event.json()?, "from ws", 2, "1234");

    // A moderator's `bye` on the topic makes the lambda close every viewer.
    live.publish(&comments, json!({"cmd": "bye"})).await?;
    let event = sse.next_event(WAIT).await?;
    assert_eq!(event.event.as_deref(), Some("closed"), "{event:?}");
    let closed = event.json()?;
    assert_eq!(closed["code"], 4001, "{closed}");
    assert_eq!(closed["reason"], "bye", "{closed}");
    assert_eq!(
        sse.next_event_or_end(WAIT).await?,
        None,
        "the response ends"
    );

    let closed = ws
        .recv_until(|v| v["type"] == "closed" && v["stream"] == "w", WAIT)
        .await?;
    assert_eq!(closed["code"], 4001, "{closed}");
    Ok(())
}

#[tokio::test]
async fn an_sse_viewer_resumes_from_last_event_id() -> anyhow::Result<()> {
    let live = LiveComments::start().await?;
    let url = live.gateway.url(&format!("/v1/sse/{APP}?video=42"));
    let comments = comment_topic("42");

    let mut sse = SseClient::connect(&url, &[]).await?;
    assert_eq!(sse.status(), 200);
    live.publish(&comments, json!({"text": "one"})).await?;
    let first = sse.next_event(WAIT).await?;
    let cursor = first.id.clone().expect("id: on a comment");
    drop(sse);

    // Missed while away, then replayed through the lambda in order.
    live.publish(&comments, json!({"text": "two"})).await?;
    live.publish(&comments, json!({"text": "three"})).await?;
    let mut sse = SseClient::connect(&url, &[("Last-Event-ID", &cursor)]).await?;
    assert_eq!(sse.status(), 200);
    for text in ["two", "three"] {
        let event = sse.next_event(WAIT).await?;
        assert_eq!(event.event.as_deref(), Some("comment"), "{event:?}");
        // A new stream: its own count starts again.
        assert_eq!(event.json()?["text"], text);
    }
    live.publish(&comments, json!({"text": "four"})).await?;
    let event = sse.next_event(WAIT).await?;
    assert_eq!(event.json()?["text"], "four");
    assert_eq!(event.json()?["count"], 3);
    Ok(())
}

#[tokio::test]
async fn the_php_lambda_passes_lambda_check() -> anyhow::Result<()> {
    let php = PhpServer::start(&php_script("live_comments.php")).await?;
    let url = php.url();
    let out = within(Duration::from_secs(60), "switchboard lambda check", async {
        Ok(tokio::process::Command::new(BIN)
            .args(["lambda", "check", "--app", APP, &url])
            .kill_on_drop(true)
            .output()
            .await?)
    })
    .await?;
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

//! Keepalive and dead peers against the real gateway with a small
//! `keepalive_ms`: WebSocket `ping` frames and SSE `: ping` comments carry
//! each stream's current cursor; a peer that stops answering (no pong) or
//! stops reading (write timeout) is closed, and the (PHP) lambda gets `close`
//! with reason `timeout`.

use std::time::Duration;

use serde_json::{json, Value};
use test_support::{cursor_position, Gateway, LoggingPhp, SseClient, WsClient, WAIT};
use test_support::{gateway_with_config, publish_many, raw_get, Metrics, RawFrame, RawWs};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
const KEEPALIVE_MS: u64 = 300;

/// A gateway with the direct app `pubsub` and the PHP app `delivery`
/// (tests/php/delivery.php, logging its events), `limits` as given.
struct Setup {
    gateway: Gateway,
    lambda: LoggingPhp,
}

impl Setup {
    async fn start(limits: &str) -> anyhow::Result<Self> {
        let lambda = LoggingPhp::start("switchboard-keepalive", "delivery.php", &[]).await?;
        let config = format!(
            "[limits]\n{limits}\n\n[apps.pubsub]\nlambda = \"direct\"\ntopics = [\"a\", \"b\", \"s\"]\n\n\
             [apps.delivery]\nlambda = \"{}\"\n",
            lambda.url()
        );
        let gateway = gateway_with_config(BIN, lambda.dir(), &config, &[]).await?;
        Ok(Self { gateway, lambda })
    }

    /// With a peer on topic `big` that reads nothing: once its open reached
    /// the lambda, more than the socket buffers hold is published on `big`,
    /// and the peer is closed with reason `timeout`.
    async fn expect_write_timeout(&self) -> anyhow::Result<()> {
        self.lambda
            .wait_for("open", "the open at the lambda")
            .await?;
        publish_many(&self.gateway.http_url(), "big", &big_messages()).await?;
        assert_eq!(self.lambda.close_reason(WAIT).await?, "timeout");
        Ok(())
    }
}

async fn open(ws: &mut WsClient, stream: &str, app: &str, params: Value) -> anyhow::Result<()> {
    let reply = ws.open(stream, app, params).await?;
    assert_eq!(reply["type"], "opened", "{reply}");
    Ok(())
}

/// The next event of `stream`; returns its cursor.
async fn event_cursor(ws: &mut WsClient, stream: &str) -> anyhow::Result<String> {
    let frame = ws
        .recv_until(|v| v["type"] == "event" && v["stream"] == stream, WAIT)
        .await?;
    Ok(frame["id"].as_str().expect("topic event id").to_owned())
}

#[tokio::test]
async fn ws_pings_carry_each_streams_current_cursor() -> anyhow::Result<()> {
    let setup = Setup::start(&format!("keepalive_ms = {KEEPALIVE_MS}")).await?;
    let gw = &setup.gateway;
    let mut ws = WsClient::connect(&gw.ws_url("/v1/ws")).await?;
    open(&mut ws, "c1", "pubsub", json!({"topic": "a"})).await?;
    open(&mut ws, "c2", "pubsub", json!({"topic": "b"})).await?;
    open(&mut ws, "c3", "pubsub", json!({"topic": "a,b"})).await?;

    // A ping arrives within a few intervals, naming every stream.
    let ping = ws.recv_until(|v| v["type"] == "ping", WAIT).await?;
    for s in ["c1", "c2", "c3"] {
        assert!(ping["cursors"][s].is_string(), "{ping}");
    }

    publish_many(&gw.http_url(), "a", &[json!(1), json!(2)]).await?;
    publish_many(&gw.http_url(), "b", &[json!(3)]).await?;
    let mut last = std::collections::HashMap::new();
    let mut events = 0;
    while events < 6 {
        let frame = ws.recv_until(|v| v["type"] == "event", WAIT).await?;
        last.insert(
            frame["stream"].as_str().expect("stream").to_owned(),
            frame["id"].as_str().expect("id").to_owned(),
        );
        events += 1;
    }
    // The next ping's cursors are exactly the last ids each stream got.
    let ping = ws.recv_until(|v| v["type"] == "ping", WAIT).await?;
    for s in ["c1", "c2", "c3"] {
        assert_eq!(ping["cursors"][s], last[s].as_str(), "{s}: {ping}");
    }
    assert_eq!(cursor_position(&last["c3"], "a").as_deref(), Some("2"));
    assert_eq!(cursor_position(&last["c3"], "b").as_deref(), Some("1"));

    // Pings keep coming, and a client that reads (and so answers the
    // protocol pings) stays open over many intervals.
    for _ in 0..5 {
        let ping = ws.recv_until(|v| v["type"] == "ping", WAIT).await?;
        assert_eq!(ping["cursors"]["c1"], last["c1"].as_str(), "{ping}");
    }
    ws.send_json(&json!({"type": "ping"})).await?;
    ws.recv_until(|v| v["type"] == "pong", WAIT).await?;
    Ok(())
}

#[tokio::test]
async fn a_ping_cursor_moves_past_messages_skipped_on_purpose() -> anyhow::Result<()> {
    let setup = Setup::start(&format!("keepalive_ms = {KEEPALIVE_MS}")).await?;
    let gw = &setup.gateway;
    let mut ws = WsClient::connect(&gw.ws_url("/v1/ws")).await?;
    // Direct delivery with a dedup window: a repeat of the same data is skipped.
    open(
        &mut ws,
        "d",
        "delivery",
        json!({"topic": "dd", "deliver": "direct", "dedup_ms": "60000"}),
    )
    .await?;
    publish_many(&gw.http_url(), "dd", &[json!({"same": 1})]).await?;
    let seen = event_cursor(&mut ws, "d").await?;
    assert_eq!(cursor_position(&seen, "dd").as_deref(), Some("1"));
    publish_many(&gw.http_url(), "dd", &[json!({"same": 1})]).await?;

    // No event for message 2, but the checkpoint passes it.
    let ping = ws
        .recv_until(
            |v| {
                v["type"] == "ping"
                    && v["cursors"]["d"]
                        .as_str()
                        .and_then(|c| cursor_position(c, "dd"))
                        .is_some_and(|p| p == "2")
            },
            WAIT,
        )
        .await;
    assert!(
        ping.is_ok(),
        "the ping cursor never passed the skipped message: {ping:?}"
    );
    let metrics = Metrics::fetch(&gw.http_url()).await?;
    assert_eq!(metrics.app("dedup_drops", "delivery"), 1.0);
    Ok(())
}

#[tokio::test]
async fn sse_gets_ping_comments_with_its_cursor() -> anyhow::Result<()> {
    let setup = Setup::start(&format!("keepalive_ms = {KEEPALIVE_MS}")).await?;
    let gw = &setup.gateway;
    let mut sse = SseClient::connect(&gw.url("/v1/sse/pubsub?topic=s"), &[]).await?;
    assert_eq!(sse.status(), 200);
    // Before any event: a ping comment all the same.
    let first = sse.next_comment(WAIT).await?;
    assert!(first.starts_with(" ping"), "{first:?}");

    publish_many(&gw.http_url(), "s", &[json!("x"), json!("y")]).await?;
    let mut cursor = String::new();
    for _ in 0..2 {
        cursor = sse.next_event(WAIT).await?.id.expect("id");
    }
    let comment = sse.next_comment(WAIT).await?;
    assert_eq!(comment, format!(" ping {cursor}"));
    let comment = sse.next_comment(WAIT).await?;
    assert_eq!(comment, format!(" ping {cursor}"), "and again");
    Ok(())
}

#[tokio::test]
async fn a_ws_peer_that_never_answers_is_closed_with_timeout() -> anyhow::Result<()> {
    let setup = Setup::start(&format!("keepalive_ms = {KEEPALIVE_MS}")).await?;
    let gw = &setup.gateway;
    // The handshake, then silence: no read, no pong, nothing.
    let mut peer = RawWs::connect(gw.addr(), "/v1/ws?app=delivery&topic=quiet", None).await?;
    setup
        .lambda
        .wait_for("open", "the open at the lambda")
        .await?;
    let started = std::time::Instant::now();

    let reason = setup.lambda.close_reason(WAIT).await?;
    assert_eq!(reason, "timeout");
    // Detected after about two silent intervals, not much later.
    assert!(
        started.elapsed() < Duration::from_millis(KEEPALIVE_MS * 10),
        "took {:?}",
        started.elapsed()
    );

    // What the peer would have read: opened, pings, `closed` 1001, close 1001.
    let mut closed = None;
    let close_code = loop {
        match peer.recv(WAIT).await? {
            RawFrame::Text(t) => {
                let v: Value = serde_json::from_str(&t)?;
                if v["type"] == "closed" {
                    closed = Some(v);
                }
            }
            RawFrame::Close(code) => break code,
            _ => {}
        }
    };
    let closed = closed.expect("a closed frame before the close");
    assert_eq!(closed["stream"], "0", "{closed}");
    assert_eq!(closed["code"], 1001, "{closed}");
    assert_eq!(close_code, Some(1001));
    let metrics = Metrics::fetch(&gw.http_url()).await?;
    assert_eq!(metrics.app("streams", "delivery"), 0.0);
    Ok(())
}

/// 200 messages of about 60 KB: 12 MB, more than the socket buffers of a
/// peer with a small receive buffer hold (the sender's may grow to 4 MiB).
fn big_messages() -> Vec<Value> {
    (0..200)
        .map(|i| json!({"i": i, "pad": "x".repeat(60_000)}))
        .collect()
}

#[tokio::test]
async fn a_ws_peer_that_stops_reading_is_closed_by_the_write_timeout() -> anyhow::Result<()> {
    // Keepalive far away: only the write timeout can notice.
    let setup = Setup::start("keepalive_ms = 60000\nwrite_timeout_ms = 500").await?;
    let gw = &setup.gateway;
    let _peer = RawWs::connect(
        gw.addr(),
        "/v1/ws?app=delivery&topic=big&deliver=direct",
        Some(4096),
    )
    .await?;
    setup.expect_write_timeout().await
}

#[tokio::test]
async fn an_sse_peer_that_stops_reading_is_closed_by_the_write_timeout() -> anyhow::Result<()> {
    let setup = Setup::start("keepalive_ms = 60000\nwrite_timeout_ms = 500").await?;
    let gw = &setup.gateway;
    // Connected, then never read.
    let path = "/v1/sse/delivery?topic=big&deliver=direct";
    let _sse = raw_get(gw.addr(), path, &[("Accept", "text/event-stream")], 4096).await?;
    setup.expect_write_timeout().await
}

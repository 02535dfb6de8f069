//! History and resume (PROTOCOL.md "Cursors, order and resume") against the
//! real gateway: WebSocket `resume`, SSE `Last-Event-ID` and `?resume=`
//! replay each topic after the cursor, in order, with no duplicate and no gap
//! at the seam even while messages are being published; past the history or
//! with an unusable cursor the client gets `gap` first; replayed messages of
//! a `lambda` topic go through the (PHP) lambda like live ones.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use test_support::publish_many;
use test_support::{
    cursor_position, eventually, parse_cursor, publish, Gateway, LoggingPhp, SseClient, SseEvent,
    WsClient, WAIT,
};

mod lambda;
mod load;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
/// Messages a topic keeps by default (PROTOCOL.md).
const HISTORY: u64 = 1_000;

async fn pubsub() -> anyhow::Result<Gateway> {
    Gateway::start(BIN, &[]).await
}

/// Sends `open` (with `resume` if given) and asserts it is `opened`.
async fn open(
    ws: &mut WsClient,
    stream: &str,
    app: &str,
    params: Value,
    resume: Option<&str>,
) -> anyhow::Result<()> {
    let mut frame = json!({"type": "open", "stream": stream, "app": app, "params": params});
    if let Some(r) = resume {
        frame["resume"] = json!(r);
    }
    ws.send_json(&frame).await?;
    let reply = ws.open_reply(stream).await?;
    assert_eq!(reply["type"], "opened", "{reply}");
    Ok(())
}

async fn connect(gateway: &Gateway) -> anyhow::Result<WsClient> {
    WsClient::connect(&gateway.ws_url("/v1/ws")).await
}

/// Publishes `{"n": k}` for each k on `topic`; returns the ids.
async fn publish_range(
    gateway: &Gateway,
    topic: &str,
    ns: impl Iterator<Item = u64>,
) -> anyhow::Result<Vec<String>> {
    let datas: Vec<Value> = ns.map(|n| json!({ "n": n })).collect();
    publish_many(&gateway.http_url(), topic, &datas).await
}

/// The position an event's cursor records for `topic`, as a number.
fn position(cursor: &str, topic: &str) -> u64 {
    cursor_position(cursor, topic)
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("cursor {cursor:?} has no numeric position for {topic}"))
}

/// The next frame of `stream` that is an `event` or a `gap`.
async fn next_delivery(ws: &mut WsClient, stream: &str) -> anyhow::Result<Value> {
    ws.recv_until(
        |v| v["stream"] == stream && (v["type"] == "event" || v["type"] == "gap"),
        WAIT,
    )
    .await
}

/// Reads `count` events of `stream`, asserting that each is the next message
/// of `topic` after `after` (no gap, no duplicate); returns the last cursor.
async fn expect_contiguous(
    ws: &mut WsClient,
    stream: &str,
    topic: &str,
    after: u64,
    count: u64,
) -> anyhow::Result<String> {
    let mut cursor = String::new();
    for want in after + 1..=after + count {
        let frame = next_delivery(ws, stream)
            .await
            .with_context(|| format!("waiting for message {want} of {topic}"))?;
        assert_eq!(frame["type"], "event", "wanted message {want}: {frame}");
        cursor = frame["id"]
            .as_str()
            .expect("a topic event has an id")
            .to_owned();
        assert_eq!(position(&cursor, topic), want, "{frame}");
        assert_eq!(frame["data"]["n"], want, "{frame}");
    }
    Ok(cursor)
}

/// Nothing more for `stream` arrives within `quiet`.
async fn expect_nothing(ws: &mut WsClient, stream: &str, quiet: Duration) {
    let extra = ws
        .recv_until(|v| v["stream"] == stream && v["type"] != "ping", quiet)
        .await;
    assert!(extra.is_err(), "unexpected frame: {extra:?}");
}

/// Per-topic contiguity of what one resumed stream receives.
struct Seen {
    topics: Vec<String>,
    last: Vec<u64>,
}

impl Seen {
    fn new(topics: &[&str], last: Vec<u64>) -> Self {
        Self {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            last,
        }
    }

    /// Checks one event: the next message of its topic, exactly.
    fn take(&mut self, frame: &Value) {
        assert_eq!(frame["type"], "event", "no gap expected: {frame}");
        let n = frame["data"]["n"].as_u64().expect("n");
        let topic = frame["topic"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| {
                // A single-topic stream: its only topic.
                self.topics[0].clone()
            });
        let i = self
            .topics
            .iter()
            .position(|t| *t == topic)
            .unwrap_or_else(|| panic!("event of an unexpected topic: {frame}"));
        assert_eq!(
            n,
            self.last[i] + 1,
            "topic {topic}: after {} came {n} (duplicate or gap at the seam): {frame}",
            self.last[i]
        );
        let cursor = frame["id"].as_str().expect("id");
        assert_eq!(position(cursor, &topic), n, "{frame}");
        self.last[i] = n;
    }
}

/// Checks an SSE event as the next message of `topic` after `after`.
fn assert_sse_message(event: &SseEvent, topic: &str, want: u64) {
    assert_eq!(event.event, None, "{event:?}");
    let cursor = event.id.as_deref().expect("a topic event has an id");
    assert_eq!(position(cursor, topic), want, "{event:?}");
    assert_eq!(event.json().expect("JSON data")["n"], want, "{event:?}");
}

#[tokio::test]
async fn ws_resume_replays_after_the_cursor_in_order_then_goes_live() -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let mut ws = connect(&gateway).await?;
    open(&mut ws, "c1", "pubsub", json!({"topic": "t"}), None).await?;
    publish_range(&gateway, "t", 1..=5).await?;
    // The client saw 1..3 before its connection dropped.
    let cursor = expect_contiguous(&mut ws, "c1", "t", 0, 3).await?;
    drop(ws);

    publish_range(&gateway, "t", 6..=10).await?;
    let mut ws = connect(&gateway).await?;
    open(&mut ws, "r", "pubsub", json!({"topic": "t"}), Some(&cursor)).await?;
    expect_contiguous(&mut ws, "r", "t", 3, 7).await?;
    publish_range(&gateway, "t", 11..=12).await?;
    expect_contiguous(&mut ws, "r", "t", 10, 2).await?;
    expect_nothing(&mut ws, "r", Duration::from_millis(300)).await;
    Ok(())
}

#[tokio::test]
async fn ws_resume_from_the_newest_position_replays_nothing() -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let mut ws = connect(&gateway).await?;
    open(&mut ws, "c1", "pubsub", json!({"topic": "t"}), None).await?;
    publish_range(&gateway, "t", 1..=2).await?;
    let cursor = expect_contiguous(&mut ws, "c1", "t", 0, 2).await?;

    let mut again = connect(&gateway).await?;
    open(
        &mut again,
        "r",
        "pubsub",
        json!({"topic": "t"}),
        Some(&cursor),
    )
    .await?;
    expect_nothing(&mut again, "r", Duration::from_millis(300)).await;
    publish_range(&gateway, "t", 3..=3).await?;
    expect_contiguous(&mut again, "r", "t", 2, 1).await?;
    Ok(())
}

#[tokio::test]
async fn ws_resume_past_the_history_gets_gap_then_the_retained_history_then_live(
) -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let mut ws = connect(&gateway).await?;
    open(&mut ws, "c1", "pubsub", json!({"topic": "old"}), None).await?;
    publish_range(&gateway, "old", 1..=1).await?;
    let cursor = expect_contiguous(&mut ws, "c1", "old", 0, 1).await?;
    drop(ws);

    // 1,200 more: the topic keeps only the last 1,000 (202..=1201).
    let total = 1 + 1_200;
    publish_range(&gateway, "old", 2..=total).await?;
    let oldest_kept = total - HISTORY + 1;

    let mut ws = connect(&gateway).await?;
    open(
        &mut ws,
        "r",
        "pubsub",
        json!({"topic": "old"}),
        Some(&cursor),
    )
    .await?;
    let gap = next_delivery(&mut ws, "r").await?;
    assert_eq!(gap["type"], "gap", "the gap comes first: {gap}");
    assert_eq!(gap["topics"], json!(["old"]), "{gap}");
    // Then what could be replayed, then live.
    expect_contiguous(&mut ws, "r", "old", oldest_kept - 1, HISTORY).await?;
    publish_range(&gateway, "old", total + 1..=total + 1).await?;
    expect_contiguous(&mut ws, "r", "old", total, 1).await?;
    Ok(())
}

#[tokio::test]
async fn sse_resume_past_the_history_gets_gap_first() -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let url = gateway.url("/v1/sse/pubsub?topic=old");
    let mut sse = SseClient::connect(&url, &[]).await?;
    publish_range(&gateway, "old", 1..=1).await?;
    let first = sse.next_event(WAIT).await?;
    let cursor = first.id.clone().expect("id");
    drop(sse);
    publish_range(&gateway, "old", 2..=1_201).await?;

    let mut sse = SseClient::connect(&url, &[("Last-Event-ID", &cursor)]).await?;
    assert_eq!(sse.status(), 200);
    let gap = sse.next_event(WAIT).await?;
    assert_eq!(gap.event.as_deref(), Some("gap"), "{gap:?}");
    assert_eq!(gap.id, None, "a gap carries no id: {gap:?}");
    assert_eq!(gap.json()?["topics"], json!(["old"]), "{gap:?}");
    // Then the retained history (202..=1201), then live.
    for want in 202..=1_201 {
        let event = sse
            .next_event(WAIT)
            .await
            .with_context(|| format!("waiting for retained message {want}"))?;
        assert_sse_message(&event, "old", want);
    }
    publish_range(&gateway, "old", 1_202..=1_202).await?;
    assert_sse_message(&sse.next_event(WAIT).await?, "old", 1_202);
    Ok(())
}

#[tokio::test]
async fn an_unparseable_or_foreign_cursor_gets_gap_then_live() -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    publish_range(&gateway, "t", 1..=3).await?;
    // Unparseable; another store's epoch; a position this store never gave.
    for (i, bad) in ["not a cursor!", "zz9~t~2", "@@@"].iter().enumerate() {
        let mut ws = connect(&gateway).await?;
        let stream = format!("s{i}");
        open(&mut ws, &stream, "pubsub", json!({"topic": "t"}), Some(bad)).await?;
        let gap = next_delivery(&mut ws, &stream).await?;
        assert_eq!(gap["type"], "gap", "cursor {bad:?}: {gap}");
        assert_eq!(gap["topics"], json!(["t"]), "{gap}");
        let n = 4 + i as u64;
        publish_range(&gateway, "t", n..=n).await?;
        let live = next_delivery(&mut ws, &stream).await?;
        assert_eq!(live["type"], "event", "{live}");
        assert_eq!(live["data"]["n"], n, "{live}");
    }

    // A position past the topic's newest is not this store's either.
    let mut ws = connect(&gateway).await?;
    let real = {
        let mut probe = connect(&gateway).await?;
        open(&mut probe, "p", "pubsub", json!({"topic": "t"}), None).await?;
        publish_range(&gateway, "t", 8..=8).await?;
        next_delivery(&mut probe, "p").await?["id"]
            .as_str()
            .expect("id")
            .to_owned()
    };
    let (epoch, _) = parse_cursor(&real).expect("cursor shape");
    let future = format!("{epoch}~t~999999");
    open(&mut ws, "f", "pubsub", json!({"topic": "t"}), Some(&future)).await?;
    let gap = next_delivery(&mut ws, "f").await?;
    assert_eq!(gap["type"], "gap", "{gap}");
    publish_range(&gateway, "t", 9..=9).await?;
    let live = next_delivery(&mut ws, "f").await?;
    assert_eq!(live["data"]["n"], 9, "live after the gap: {live}");

    // SSE: the same, by header and by query.
    let url = gateway.url("/v1/sse/pubsub?topic=t");
    let mut sse = SseClient::connect(&url, &[("Last-Event-ID", "not a cursor!")]).await?;
    assert_eq!(sse.status(), 200);
    let gap = sse.next_event(WAIT).await?;
    assert_eq!(gap.event.as_deref(), Some("gap"), "{gap:?}");
    assert_eq!(gap.json()?["topics"], json!(["t"]));
    let mut sse = SseClient::connect(&format!("{url}&resume=zz9~t~1"), &[]).await?;
    let gap = sse.next_event(WAIT).await?;
    assert_eq!(gap.event.as_deref(), Some("gap"), "{gap:?}");
    Ok(())
}

#[tokio::test]
async fn a_multi_topic_cursor_resumes_each_topic_and_an_absent_topic_starts_live(
) -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let mut ws = connect(&gateway).await?;
    open(&mut ws, "m", "pubsub", json!({"topic": "a,b"}), None).await?;
    publish_range(&gateway, "a", 1..=2).await?;
    publish_range(&gateway, "b", 1..=2).await?;
    let mut seen = Seen::new(&["a", "b"], vec![0, 0]);
    let mut cursor = String::new();
    for _ in 0..4 {
        let frame = next_delivery(&mut ws, "m").await?;
        seen.take(&frame);
        cursor = frame["id"].as_str().expect("id").to_owned();
    }
    // The cursor records both topics.
    assert_eq!(position(&cursor, "a"), 2, "{cursor}");
    assert_eq!(position(&cursor, "b"), 2, "{cursor}");
    drop(ws);

    publish_range(&gateway, "a", 3..=3).await?;
    publish_range(&gateway, "b", 3..=5).await?;
    let mut ws = connect(&gateway).await?;
    open(
        &mut ws,
        "m",
        "pubsub",
        json!({"topic": "a,b"}),
        Some(&cursor),
    )
    .await?;
    let mut resumed = Seen::new(&["a", "b"], vec![2, 2]);
    for _ in 0..4 {
        resumed.take(&next_delivery(&mut ws, "m").await?);
    }
    assert_eq!(resumed.last, vec![3, 5]);
    expect_nothing(&mut ws, "m", Duration::from_millis(300)).await;

    // A cursor that names only `a`: `a` replays, `b` starts live.
    let (epoch, _) = parse_cursor(&cursor).expect("cursor shape");
    let only_a = format!("{epoch}~a~2");
    let mut ws = connect(&gateway).await?;
    open(
        &mut ws,
        "x",
        "pubsub",
        json!({"topic": "a,b"}),
        Some(&only_a),
    )
    .await?;
    let replayed = next_delivery(&mut ws, "x").await?;
    assert_eq!(replayed["data"]["n"], 3, "{replayed}");
    assert_eq!(position(replayed["id"].as_str().expect("id"), "a"), 3);
    expect_nothing(&mut ws, "x", Duration::from_millis(300)).await;
    publish_range(&gateway, "b", 6..=6).await?;
    let live = next_delivery(&mut ws, "x").await?;
    assert_eq!(live["data"]["n"], 6, "b is live from here: {live}");
    Ok(())
}

#[tokio::test]
async fn the_ws_shortcut_resumes_from_its_resume_query_parameter() -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let mut ws = connect(&gateway).await?;
    open(&mut ws, "c1", "pubsub", json!({"topic": "q"}), None).await?;
    publish_range(&gateway, "q", 1..=2).await?;
    let cursor = expect_contiguous(&mut ws, "c1", "q", 0, 1).await?;
    drop(ws);
    publish_range(&gateway, "q", 3..=3).await?;

    // `resume` is the cursor, not a param: stream "0" follows `q` from 1.
    let mut ws =
        WsClient::connect(&gateway.ws_url(&format!("/v1/ws?app=pubsub&topic=q&resume={cursor}")))
            .await?;
    let opened = ws.open_reply("0").await?;
    assert_eq!(opened["type"], "opened", "{opened}");
    expect_contiguous(&mut ws, "0", "q", 1, 2).await?;
    Ok(())
}

#[tokio::test]
async fn history_is_bounded_by_bytes_too() -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let mut ws = connect(&gateway).await?;
    open(&mut ws, "c1", "pubsub", json!({"topic": "fat"}), None).await?;
    publish_range(&gateway, "fat", 1..=1).await?;
    let cursor = expect_contiguous(&mut ws, "c1", "fat", 0, 1).await?;
    drop(ws);
    // 30 messages of ~60 KB: 1.8 MB, more than the 1 MiB a topic keeps.
    let fat: Vec<Value> = (2..=31)
        .map(|n| json!({"n": n, "pad": "x".repeat(60_000)}))
        .collect();
    publish_many(&gateway.http_url(), "fat", &fat).await?;

    let mut ws = connect(&gateway).await?;
    open(
        &mut ws,
        "r",
        "pubsub",
        json!({"topic": "fat"}),
        Some(&cursor),
    )
    .await?;
    let gap = next_delivery(&mut ws, "r").await?;
    assert_eq!(gap["type"], "gap", "{gap}");
    // Then a contiguous suffix of at most 1 MiB, ending with the newest.
    let first = next_delivery(&mut ws, "r").await?;
    let from = first["data"]["n"].as_u64().expect("n");
    assert!(from > 2, "the whole 1.8 MB was kept (replay from {from})");
    let kept = 31 - from + 1;
    assert!(kept * 60_000 <= 1 << 20, "{kept} messages of 60 KB kept");
    expect_contiguous(&mut ws, "r", "fat", from, 31 - from).await?;
    Ok(())
}

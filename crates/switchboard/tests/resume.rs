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

/// How far the publisher may run ahead of the client: well within the
/// history, so that a resume never legitimately needs a `gap`.
const AHEAD: u64 = 300;

/// Publishes `{"n": k}` on each of `topics` in turn, in small batches, as fast
/// as it can (but at most [`AHEAD`] messages past `consumed`) until `stop`,
/// counting every message in `progress`; returns how many it published per topic.
fn spawn_publisher(
    http_url: String,
    topics: Vec<String>,
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
    consumed: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<anyhow::Result<Vec<u64>>> {
    tokio::spawn(async move {
        let mut counts = vec![0u64; topics.len()];
        while !stop.load(Ordering::Relaxed) {
            if progress.load(Ordering::Relaxed) > consumed.load(Ordering::Relaxed) + AHEAD {
                tokio::time::sleep(Duration::from_millis(2)).await;
                continue;
            }
            for (i, topic) in topics.iter().enumerate() {
                let messages: Vec<Value> = (1..=3)
                    .map(|k| json!({"topic": topic, "data": {"n": counts[i] + k}}))
                    .collect();
                let (status, body) =
                    publish(&http_url, None, &json!({ "messages": messages })).await?;
                anyhow::ensure!(status == 200, "publish answered {status}: {body}");
                counts[i] += 3;
                progress.fetch_add(3, Ordering::Relaxed);
            }
        }
        Ok(counts)
    })
}

/// Waits until the publisher has published 30 more messages (or as many as
/// it may run ahead of the client).
async fn backlog(progress: &AtomicU64, consumed: &AtomicU64) -> anyhow::Result<()> {
    let from = progress.load(Ordering::Relaxed);
    let target = (from + 30).min(consumed.load(Ordering::Relaxed) + AHEAD);
    eventually(WAIT, "a backlog of publishes", || {
        (progress.load(Ordering::Relaxed) >= target).then_some(())
    })
    .await
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

/// A client drops its connection and resumes, round after round, while a
/// publisher publishes without pause: every message arrives exactly once.
async fn resume_rounds_under_load(topics: &[&str]) -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let params = json!({ "topic": topics.join(",") });
    let stop = Arc::new(AtomicBool::new(false));
    let mut ws = connect(&gateway).await?;
    open(&mut ws, "s", "pubsub", params.clone(), None).await?;
    let progress = Arc::new(AtomicU64::new(0));
    let consumed = Arc::new(AtomicU64::new(0));
    let publisher = spawn_publisher(
        gateway.http_url(),
        topics.iter().map(|t| t.to_string()).collect(),
        stop.clone(),
        progress.clone(),
        consumed.clone(),
    );

    let mut seen = Seen::new(topics, vec![0; topics.len()]);
    let mut cursor = String::new();
    for round in 0..8 {
        // Take a few events live, then drop the connection abruptly.
        for _ in 0..(5 + round * 3) {
            let frame = next_delivery(&mut ws, "s").await?;
            seen.take(&frame);
            consumed.fetch_add(1, Ordering::Relaxed);
            cursor = frame["id"].as_str().expect("id").to_owned();
        }
        drop(ws);
        // A backlog to replay, while publishing goes on during the resume.
        backlog(&progress, &consumed).await?;
        ws = connect(&gateway).await?;
        open(&mut ws, "s", "pubsub", params.clone(), Some(&cursor)).await?;
    }
    stop.store(true, Ordering::Relaxed);
    let published = publisher.await??;
    // Everything published reaches the last resumed stream, once.
    while seen.last != published {
        let frame = next_delivery(&mut ws, "s").await?;
        seen.take(&frame);
    }
    expect_nothing(&mut ws, "s", Duration::from_millis(300)).await;
    Ok(())
}

#[tokio::test]
async fn ws_resume_while_publishing_loses_and_doubles_nothing() -> anyhow::Result<()> {
    resume_rounds_under_load(&["live"]).await
}

#[tokio::test]
async fn ws_resume_of_two_topics_while_publishing_loses_and_doubles_nothing() -> anyhow::Result<()>
{
    resume_rounds_under_load(&["left", "right"]).await
}

/// Checks an SSE event as the next message of `topic` after `after`.
fn assert_sse_message(event: &SseEvent, topic: &str, want: u64) {
    assert_eq!(event.event, None, "{event:?}");
    let cursor = event.id.as_deref().expect("a topic event has an id");
    assert_eq!(position(cursor, topic), want, "{event:?}");
    assert_eq!(event.json().expect("JSON data")["n"], want, "{event:?}");
}

/// SSE: resume by `Last-Event-ID` (header) or `?resume=` while publishing.
async fn sse_resume_under_load(by_header: bool) -> anyhow::Result<()> {
    let gateway = pubsub().await?;
    let url = gateway.url("/v1/sse/pubsub?topic=feed");
    let stop = Arc::new(AtomicBool::new(false));
    let mut sse = SseClient::connect(&url, &[]).await?;
    assert_eq!(sse.status(), 200);
    let progress = Arc::new(AtomicU64::new(0));
    let consumed = Arc::new(AtomicU64::new(0));
    let publisher = spawn_publisher(
        gateway.http_url(),
        vec!["feed".into()],
        stop.clone(),
        progress.clone(),
        consumed.clone(),
    );

    let mut last = 0;
    let mut cursor = String::new();
    for round in 0..6 {
        for _ in 0..(4 + round * 3) {
            let event = sse.next_event(WAIT).await?;
            assert_sse_message(&event, "feed", last + 1);
            last += 1;
            consumed.store(last, Ordering::Relaxed);
            cursor = event.id.clone().expect("id");
        }
        drop(sse);
        backlog(&progress, &consumed).await?;
        sse = if by_header {
            SseClient::connect(&url, &[("Last-Event-ID", &cursor)]).await?
        } else {
            SseClient::connect(&format!("{url}&resume={cursor}"), &[]).await?
        };
        assert_eq!(sse.status(), 200);
    }
    stop.store(true, Ordering::Relaxed);
    let published = publisher.await??[0];
    while last < published {
        let event = sse.next_event(WAIT).await?;
        assert_sse_message(&event, "feed", last + 1);
        last += 1;
    }
    Ok(())
}

#[tokio::test]
async fn sse_last_event_id_resumes_while_publishing() -> anyhow::Result<()> {
    sse_resume_under_load(true).await
}

#[tokio::test]
async fn sse_resume_query_resumes_while_publishing() -> anyhow::Result<()> {
    sse_resume_under_load(false).await
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

/// A gateway whose app `delivery` is `tests/php/delivery.php`, logging events.
struct PhpLambda {
    gateway: Gateway,
    lambda: LoggingPhp,
}

impl PhpLambda {
    async fn start() -> anyhow::Result<Self> {
        let lambda = LoggingPhp::start("switchboard-resume", "delivery.php", &[]).await?;
        let app = format!("delivery={}", lambda.url());
        let gateway = Gateway::start(BIN, &["--app", &app]).await?;
        Ok(Self { gateway, lambda })
    }

    /// `message` events the lambda got for message `id` of `topic`.
    fn message_events(&self, topic: &str, id: u64) -> Vec<Value> {
        let id = id.to_string();
        self.lambda
            .events()
            .into_iter()
            .filter(|e| {
                e["type"] == "message" && e["topic"] == topic && e["id"].as_str() == Some(&id)
            })
            .collect()
    }
}

/// The next `msg` push of `stream`, checked as marked by PHP for message `want`.
async fn expect_marked(
    ws: &mut WsClient,
    stream: &str,
    topic: &str,
    want: u64,
) -> anyhow::Result<String> {
    let frame = next_delivery(ws, stream).await?;
    assert_eq!(frame["type"], "event", "{frame}");
    assert_eq!(frame["event"], "msg", "{frame}");
    assert_eq!(frame["data"]["marked"], "php", "{frame}");
    assert_eq!(frame["data"]["id"], want.to_string(), "{frame}");
    assert_eq!(frame["data"]["data"]["n"], want, "{frame}");
    let cursor = frame["id"]
        .as_str()
        .expect("a push answering a message has an id");
    assert_eq!(position(cursor, topic), want, "{frame}");
    Ok(cursor.to_owned())
}

#[tokio::test]
async fn replayed_messages_of_a_lambda_topic_go_through_the_lambda() -> anyhow::Result<()> {
    let php = PhpLambda::start().await?;
    let gateway = &php.gateway;
    let mut ws = connect(gateway).await?;
    open(&mut ws, "c", "delivery", json!({"topic": "lam"}), None).await?;
    publish_range(gateway, "lam", 1..=3).await?;
    let cursor = expect_marked(&mut ws, "c", "lam", 1).await?;
    expect_marked(&mut ws, "c", "lam", 2).await?;
    expect_marked(&mut ws, "c", "lam", 3).await?;
    drop(ws);
    // The first stream is gone (its close reached the lambda) before 4 and 5.
    eventually(WAIT, "the first stream's close at the lambda", || {
        php.lambda
            .events()
            .iter()
            .any(|e| e["type"] == "close")
            .then_some(())
    })
    .await?;

    publish_range(gateway, "lam", 4..=5).await?;
    let mut ws = connect(gateway).await?;
    open(
        &mut ws,
        "c",
        "delivery",
        json!({"topic": "lam"}),
        Some(&cursor),
    )
    .await?;
    for want in 2..=5 {
        expect_marked(&mut ws, "c", "lam", want).await?;
    }
    publish_range(gateway, "lam", 6..=6).await?;
    expect_marked(&mut ws, "c", "lam", 6).await?;

    // 2 and 3 went to the lambda twice (live, then replayed), 4 and 5 once
    // (the first stream was gone), 6 once.
    for (id, times) in [(1, 1), (2, 2), (3, 2), (4, 1), (5, 1), (6, 1)] {
        assert_eq!(
            php.message_events("lam", id).len(),
            times,
            "message {id}: {:?}",
            php.lambda.events()
        );
    }

    // SSE resumes through the lambda too.
    let url = gateway.url("/v1/sse/delivery?topic=lam");
    let mut sse = SseClient::connect(&url, &[("Last-Event-ID", &cursor)]).await?;
    assert_eq!(sse.status(), 200);
    for want in 2..=6u64 {
        let event = sse.next_event(WAIT).await?;
        assert_eq!(event.event.as_deref(), Some("msg"), "{event:?}");
        let data = event.json()?;
        assert_eq!(data["marked"], "php", "{event:?}");
        assert_eq!(data["id"], want.to_string(), "{event:?}");
        assert_eq!(position(event.id.as_deref().expect("id"), "lam"), want);
    }
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

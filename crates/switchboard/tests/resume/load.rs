//! Resumes while messages are being published: no loss and no duplicate at
//! the seam, over WebSocket `resume`, SSE `Last-Event-ID` and `?resume=`.

use super::*;

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

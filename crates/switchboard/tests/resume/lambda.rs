//! Replayed messages of a `lambda` topic go through the (PHP) lambda.

use super::*;

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

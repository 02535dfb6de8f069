//! A drain's `close` events publish across nodes: node A's lambda answers
//! each `close` event with a `publish`, and the streams of node B get the
//! messages although A was told to stop (SIGTERM): the drain waits for the
//! close events' publishes, not only for their lambda calls.

use serde_json::{json, Value};
use test_support::{php_script, within, PhpServer, WsClient, WsFrame};

use super::harness::*;

/// Streams on A, each of whose `close` answer publishes its name.
const STREAMS: [&str; 4] = ["s1", "s2", "s3", "s4"];
/// Publishes of 60,000 bytes before the name, in each `close` answer: they
/// keep the publishes going for a while after the lambda call is over.
const FILL: u32 = 16;

pub async fn close_publishes_survive_the_drain(kind: Kind) -> anyhow::Result<()> {
    let broker = Broker::start(kind).await?;
    let php = PhpServer::start(&php_script("lambda_bounds.php")).await?;
    let url = broker.url();
    let app = format!("closer={}", php.url());
    let a_args = ["--app", app.as_str()];
    let (a, b) = tokio::join!(node(&url, &a_args), node(&url, &[]));
    let (mut a, b) = (a?, b?);
    let topic = "drain/closed";
    let mut on_b = ws_streams(&b, &[("watch", topic)], None).await?;
    broker.await_interest(topic, 1).await?;

    let mut on_a = WsClient::connect(&a.ws_url("/v1/ws")).await?;
    for name in STREAMS {
        let on_close = json!({"type": "publish", "topic": topic, "data": {"closed": name}});
        let params = json!({ "on_close": on_close.to_string(), "close_fill": FILL });
        let reply = within(
            LAMBDA_WAIT,
            "a stream on A to open",
            on_a.open(name, "closer", params),
        )
        .await?;
        anyhow::ensure!(reply["type"] == "opened", "open {name}: {reply}");
    }

    a.signal("TERM")?;
    assert_eq!(
        close_code(&mut on_a).await?,
        Some(1012),
        "A closed its streams for the drain"
    );
    // Gone at once, so A's drain goes on to the close events without
    // waiting for this client to hang up.
    drop(on_a);
    let status = a.wait_exit(LAMBDA_WAIT).await?;
    assert!(status.success(), "A exited with {status}");

    let got = ws_events(&mut on_b, &["watch"], topic, STREAMS.len()).await?;
    let mut closed: Vec<Value> = got["watch"].iter().map(|g| g.data.clone()).collect();
    closed.sort_by_key(|d| d["closed"].as_str().map(str::to_owned));
    let want: Vec<Value> = STREAMS.iter().map(|s| json!({ "closed": s })).collect();
    assert_eq!(closed, want, "every close event's publish reached B");
    Ok(())
}

/// Reads a WebSocket to its close frame; its code.
async fn close_code(ws: &mut WsClient) -> anyhow::Result<Option<u16>> {
    loop {
        if let WsFrame::Closed { code, .. } = ws.recv(LAMBDA_WAIT).await? {
            return Ok(code);
        }
    }
}

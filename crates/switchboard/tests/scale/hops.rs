//! The publish hop limit across nodes: a loop between two nodes' lambdas
//! stops because every broker carries each message's hop count.

use serde_json::json;
use test_support::{php_script, within, Gateway, PhpServer, WsClient};
use test_support::{wait_app_metric, Metrics};

use super::harness::*;

/// A publish loop across two nodes stops at the hop limit: the lambda on A
/// answers each `ping` message with a `pong`, the one on B each `pong` with
/// a `ping`, so every hop crosses the broker, which must carry the hop
/// count (NATS header, Redis entry field and live payload).
pub async fn publish_loop_across_nodes_stops(kind: Kind) -> anyhow::Result<()> {
    let broker = Broker::start(kind).await?;
    let php = PhpServer::start(&php_script("lambda_bounds.php")).await?;
    let url = broker.url();
    let app = format!("loop={}", php.url());
    let args = ["--app", app.as_str()];
    let (a, b) = tokio::join!(node(&url, &args), node(&url, &args));
    let (a, b) = (a?, b?);
    let mut on_a = loop_stream(&a, "ping", "pong").await?;
    let mut on_b = loop_stream(&b, "pong", "ping").await?;
    broker.await_interest("ping", 1).await?;
    broker.await_interest("pong", 1).await?;

    publish_ok(&b, "ping", json!({"n": 0})).await?;
    let exceeded = |gw: &Gateway| {
        let url = gw.http_url();
        async move {
            wait_app_metric(&url, "publish_hops_exceeded", "loop", LAMBDA_WAIT, |v| {
                v >= 1.0
            })
            .await
        }
    };
    exceeded(&a).await?;
    // Hops 0 (outside), 2, 4, 6, 8 reach A; 1, 3, 5, 7 reach B. A's answer
    // to hop 8 would be the 9th lambda publish: dropped.
    assert_eq!(seen_n(&mut on_a, 5).await?, [0, 2, 4, 6, 8]);
    assert_eq!(seen_n(&mut on_b, 4).await?, [1, 3, 5, 7]);
    let (ma, mb) = (metrics(&a).await?, metrics(&b).await?);
    assert_eq!(ma.app("publishes", "loop"), 4.0);
    assert_eq!(mb.app("publishes", "loop"), 4.0);
    assert_eq!(ma.app("publish_hops_exceeded", "loop"), 1.0);
    assert_eq!(mb.app("publish_hops_exceeded", "loop"), 0.0);
    Ok(())
}

/// A stream of the bounds lambda that follows `follow` and answers each of
/// its messages with a publish to `to`.
async fn loop_stream(gw: &Gateway, follow: &str, to: &str) -> anyhow::Result<WsClient> {
    let mut ws = WsClient::connect(&gw.ws_url("/v1/ws")).await?;
    let reply = within(
        LAMBDA_WAIT,
        "the loop stream to open",
        ws.open("l", "loop", json!({"follow": follow, "to": to})),
    )
    .await?;
    anyhow::ensure!(reply["type"] == "opened", "{reply}");
    Ok(ws)
}

/// The `n` of the next `count` messages the bounds lambda pushed as `seen`.
async fn seen_n(ws: &mut WsClient, count: usize) -> anyhow::Result<Vec<u64>> {
    let mut got = Vec::new();
    while got.len() < count {
        let f = ws
            .recv_until(
                |f| f["type"] == "event" && f["event"] == "seen",
                LAMBDA_WAIT,
            )
            .await?;
        got.push(f["data"]["data"]["n"].as_u64().unwrap_or(u64::MAX));
    }
    Ok(got)
}

async fn metrics(gw: &Gateway) -> anyhow::Result<Metrics> {
    Metrics::fetch(&gw.http_url()).await
}

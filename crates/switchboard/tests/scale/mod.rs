//! Scale-out scenarios shared by `scale_nats.rs` and `scale_redis.rs`: real
//! brokers and three real gateway processes on free loopback ports. Each
//! scenario takes the broker kind, so both brokers pass the same checks.

// Each test binary uses one broker kind.
#![allow(dead_code)]

mod harness;
mod hops;

use std::time::Duration;

use serde_json::json;
use switchboard_protocol::cursor::id_order;
use test_support::brokers::TcpProxy;
use test_support::{cursor_position, php_script, publish, within, PhpServer, WsClient, WAIT};
use tokio::time::Instant;

use harness::*;
pub use harness::{run, Kind};
pub use hops::publish_loop_across_nodes_stops;

/// The test binary of broker `$kind` (a [`Kind`]): one `#[test]` per
/// scenario below, named as the scenario, each run on a fresh runtime.
macro_rules! broker_tests {
    ($kind:expr) => {
        $crate::scale::broker_tests!(
            $kind;
            fanout_across_nodes,
            lambda_publish_reaches_other_nodes,
            resume_on_another_node,
            broker_restart,
            node_cut_off_catches_up,
            node_killed_clients_resume,
            store_lost,
            publish_loop_across_nodes_stops,
        );
    };
    ($kind:expr; $($scenario:ident),+ $(,)?) => {
        $(
            #[test]
            fn $scenario() -> anyhow::Result<()> {
                $crate::scale::run($crate::scale::$scenario($kind))
            }
        )+
    };
}
pub(crate) use broker_tests;

// ---- scenarios ---------------------------------------------------------------

/// Publishes on any node reach streams on the others in one id order; a node
/// holds one broker subscription per topic however many streams follow it,
/// and drops it with the last; publish dedup holds across nodes.
pub async fn fanout_across_nodes(kind: Kind) -> anyhow::Result<()> {
    let broker = Broker::start(kind).await?;
    let (a, b, c) = nodes(&broker.url()).await?;
    let topic = "scale_fanout";
    let mut ws1 = ws_streams(&b, &[("s1", topic), ("s2", topic)], None).await?;
    let mut ws2 = ws_streams(&b, &[("s3", topic)], None).await?;
    let mut sse = sse_stream(&c, topic, None).await?;
    broker.await_interest(topic, 2).await?;
    assert_eq!(
        broker.interest(topic).await?,
        2,
        "B and C: one each, for 3 + 1 streams"
    );

    // In turn from two nodes, then from two nodes at once.
    let mut published = Vec::new();
    for i in 0..10 {
        let gw = if i % 2 == 0 { &a } else { &b };
        published.push(publish_ok(gw, topic, json!({ "n": i })).await?);
    }
    let (x, y) = tokio::join!(
        publish_run(&a, topic, 10..30),
        publish_run(&c, topic, 30..50)
    );
    published.extend(x?);
    published.extend(y?);
    let published = sorted_ids(published);
    let distinct: std::collections::HashSet<_> = published.iter().collect();
    assert_eq!(distinct.len(), 50, "ids are unique across nodes");

    let got1 = ws_events(&mut ws1, &["s1", "s2"], topic, 50).await?;
    let got2 = ws_events(&mut ws2, &["s3"], topic, 50).await?;
    let got3 = sse_events(&mut sse, topic, 50).await?;
    for got in [&got1["s1"], &got1["s2"], &got2["s3"], &got3] {
        assert_eq!(
            ids(got),
            published,
            "every stream: every message once, in id order"
        );
    }
    let epochs: std::collections::HashSet<String> = [&got1["s1"], &got3]
        .iter()
        .flat_map(|g| g.iter().map(|x| epoch(&x.cursor)))
        .collect();
    assert_eq!(epochs.len(), 1, "one epoch on every node: {epochs:?}");
    assert!(!epochs.contains("pending"));

    // A repeated dedup key answers the first id, whichever node is asked.
    let first = publish_keyed(&a, topic, json!("once"), "k1").await?;
    assert_eq!(publish_keyed(&c, topic, json!("once"), "k1").await?, first);
    assert_eq!(publish_keyed(&b, topic, json!("other"), "k1").await?, first);
    let after = publish_ok(&a, topic, json!("after")).await?;
    let got = ws_events(&mut ws2, &["s3"], topic, 2).await?;
    assert_eq!(
        ids(&got["s3"]),
        vec![first, after],
        "the deduplicated message came once"
    );

    // Interest follows the last local stream.
    ws2.close().await?;
    broker.await_interest(topic, 2).await?;
    ws1.close().await?;
    broker.await_interest(topic, 1).await?;
    let _on_a = ws_streams(&a, &[("x", topic)], None).await?;
    broker.await_interest(topic, 2).await?;
    drop(sse);
    Ok(())
}

/// A lambda's `publish` on node C reaches a stream on node B.
pub async fn lambda_publish_reaches_other_nodes(kind: Kind) -> anyhow::Result<()> {
    let broker = Broker::start(kind).await?;
    let php = PhpServer::start(&php_script("scale_lambda.php")).await?;
    let url = broker.url();
    let chat = format!("chat={}", php.url());
    let c_args = ["--app", chat.as_str()];
    let (b, c) = tokio::join!(node(&url, &[]), node(&url, &c_args));
    let (b, c) = (b?, c?);
    let topic = "room/42";
    let mut on_b = ws_streams(&b, &[("watch", topic)], None).await?;

    let mut on_c = WsClient::connect(&c.ws_url("/v1/ws")).await?;
    on_c.send_json(
        &json!({"type": "open", "stream": "talk", "app": "chat", "params": {"room": "42"}}),
    )
    .await?;
    let reply = within(
        LAMBDA_WAIT,
        "the chat stream to open",
        on_c.open_reply("talk"),
    )
    .await?;
    assert_eq!(reply["type"], "opened", "{reply}");
    broker.await_interest(topic, 2).await?;

    on_c.send_json(&json!({"type": "send", "stream": "talk", "data": {"text": "hello from C"}}))
        .await?;
    let got = ws_events(&mut on_b, &["watch"], topic, 1).await?;
    assert_eq!(got["watch"][0].data, json!({"text": "hello from C"}));
    let own = ws_events(&mut on_c, &["talk"], topic, 1).await?;
    assert_eq!(
        own["talk"][0].id, got["watch"][0].id,
        "one id for the message everywhere"
    );
    Ok(())
}

/// A client resumes on another node from the shared history: exactly the
/// missed messages, then live ones, no duplicate, no gap (WebSocket and SSE).
pub async fn resume_on_another_node(kind: Kind) -> anyhow::Result<()> {
    let broker = Broker::start(kind).await?;
    let (a, b, c) = nodes(&broker.url()).await?;
    let topic = "scale_resume";
    let mut ws = ws_streams(&a, &[("r", topic)], None).await?;
    let seen = publish_run(&b, topic, 0..3).await?;
    let got = ws_events(&mut ws, &["r"], topic, 3).await?;
    assert_eq!(ids(&got["r"]), seen);
    let cursor = got["r"][2].cursor.clone();
    ws.close().await?;

    let missed = publish_run(&b, topic, 3..6).await?;
    let mut on_c = ws_streams(&c, &[("r", topic)], Some(&cursor)).await?;
    let replayed = ws_events(&mut on_c, &["r"], topic, 3).await?;
    assert_eq!(ids(&replayed["r"]), missed, "the missed ones, from C");
    let live = publish_ok(&a, topic, json!("live")).await?;
    let next = ws_events(&mut on_c, &["r"], topic, 1).await?;
    assert_eq!(
        ids(&next["r"]),
        vec![live.clone()],
        "then live, no duplicate at the seam"
    );

    let mut sse = sse_stream(&b, topic, Some(&cursor)).await?;
    let replayed = sse_events(&mut sse, topic, 4).await?;
    let mut want = missed.clone();
    want.push(live);
    assert_eq!(ids(&replayed), want, "SSE Last-Event-ID on B: the same");
    Ok(())
}

/// The broker is killed and started again on the same port: every node says
/// 503 at once (readyz, publish), streams stay open, nodes reconnect and
/// re-declare interest, and streams get what is published afterwards.
pub async fn broker_restart(kind: Kind) -> anyhow::Result<()> {
    let mut broker = Broker::start(kind).await?;
    let (a, b, c) = nodes(&broker.url()).await?;
    let topic = "scale_outage";
    let mut ws = ws_streams(&b, &[("o", topic)], None).await?;
    let mut sse = sse_stream(&c, topic, None).await?;
    broker.await_interest(topic, 2).await?;
    let m1 = publish_ok(&a, topic, json!("before")).await?;
    let before = ws_events(&mut ws, &["o"], topic, 1).await?;
    assert_eq!(ids(&before["o"]), vec![m1.clone()]);
    assert_eq!(ids(&sse_events(&mut sse, topic, 1).await?), vec![m1]);

    broker.kill().await?;
    let killed = Instant::now();
    for gw in [&a, &b, &c] {
        wait_readyz(gw, 503, LOST_WITHIN).await?;
    }
    assert!(
        killed.elapsed() <= LOST_WITHIN,
        "not ready after {:?}",
        killed.elapsed()
    );
    for gw in [&a, &b] {
        let (status, body) =
            publish(&gw.http_url(), None, &json!({"topic": topic, "data": 1})).await?;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "broker_unavailable", "{body}");
    }
    // Down for a while (reconnection attempts fail, backoff grows): still
    // not ready, and nothing crashed: the connection still answers.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for gw in [&a, &b, &c] {
        assert_eq!(readyz(gw).await?, 503);
    }
    ws.send_json(&json!({"type": "ping"})).await?;
    assert_eq!(
        ws.recv_json_skip_pings(WAIT).await?,
        json!({"type": "pong"})
    );

    broker.restart().await?;
    for gw in [&a, &b, &c] {
        wait_readyz(gw, 200, BACK_WITHIN).await?;
    }
    broker.await_interest(topic, 2).await?;
    let m2 = publish_ok(&a, topic, json!("after")).await?;
    let (ws_gap, ws_got) = ws_next_after_gap(&mut ws, topic).await?;
    let (sse_gap, sse_got) = sse_next_after_gap(&mut sse, topic).await?;
    assert_eq!(
        (ws_got.id.as_str(), sse_got.id.as_str()),
        (m2.as_str(), m2.as_str())
    );
    assert_eq!(ws_got.data, json!("after"));
    // A broker that kept its store loses nothing; one that lost it says so.
    let lost = !broker.keeps_store();
    assert_eq!(
        (ws_gap, sse_gap),
        (lost, lost),
        "gap exactly when the store was lost"
    );
    assert_eq!(
        epoch(&ws_got.cursor) != epoch(&before["o"][0].cursor),
        lost,
        "a new epoch exactly when the store was lost"
    );
    Ok(())
}

/// One node loses its broker (a proxy cut) while the others publish; it says
/// 503 meanwhile, and on reconnection catches its streams up from history.
pub async fn node_cut_off_catches_up(kind: Kind) -> anyhow::Result<()> {
    let broker = Broker::start(kind).await?;
    let proxy = TcpProxy::start(broker.port()).await?;
    let url = broker.url();
    let via_proxy = broker.url_on(proxy.port());
    let (a, b, c) = tokio::join!(node(&url, &[]), node(&url, &[]), node(&via_proxy, &[]));
    let (a, b, c) = (a?, b?, c?);
    let topic = "scale_catchup";
    let mut on_b = ws_streams(&b, &[("b", topic)], None).await?;
    let mut on_c = ws_streams(&c, &[("c", topic)], None).await?;
    broker.await_interest(topic, 2).await?;
    let m1 = publish_ok(&a, topic, json!(1)).await?;
    assert_eq!(
        ids(&ws_events(&mut on_b, &["b"], topic, 1).await?["b"]),
        vec![m1.clone()]
    );
    assert_eq!(
        ids(&ws_events(&mut on_c, &["c"], topic, 1).await?["c"]),
        vec![m1]
    );

    proxy.cut();
    wait_readyz(&c, 503, LOST_WITHIN).await?;
    assert_eq!((readyz(&a).await?, readyz(&b).await?), (200, 200));
    let (status, _) = publish(&c.http_url(), None, &json!({"topic": topic, "data": 0})).await?;
    assert_eq!(status, 503);
    let during = publish_run(&a, topic, 2..5).await?;
    assert_eq!(
        ids(&ws_events(&mut on_b, &["b"], topic, 3).await?["b"]),
        during
    );

    proxy.restore().await?;
    wait_readyz(&c, 200, BACK_WITHIN).await?;
    let caught_up = ws_events(&mut on_c, &["c"], topic, 3).await?;
    assert_eq!(
        ids(&caught_up["c"]),
        during,
        "caught up from history, in order, no gap"
    );
    let m5 = publish_ok(&b, topic, json!(5)).await?;
    assert_eq!(
        ids(&ws_events(&mut on_c, &["c"], topic, 1).await?["c"]),
        vec![m5]
    );
    broker.await_interest(topic, 2).await?;
    Ok(())
}

/// A node is killed: its clients reconnect to other nodes and resume with
/// their cursors, without loss or duplicates.
pub async fn node_killed_clients_resume(kind: Kind) -> anyhow::Result<()> {
    let broker = Broker::start(kind).await?;
    let (mut a, b, c) = nodes(&broker.url()).await?;
    let topic = "scale_failover";
    let mut ws = ws_streams(&a, &[("f", topic)], None).await?;
    let mut sse = sse_stream(&a, topic, None).await?;
    let seen = publish_run(&b, topic, 0..2).await?;
    let ws_cursor = ws_events(&mut ws, &["f"], topic, 2).await?["f"][1]
        .cursor
        .clone();
    let sse_cursor = sse_events(&mut sse, topic, 2).await?[1].cursor.clone();
    assert_eq!(cursor_position(&ws_cursor, topic), seen.last().cloned());

    a.signal("KILL")?;
    a.wait_exit(WAIT).await?;
    let ended = within(WAIT, "the dead node's connection to end", async {
        loop {
            match ws.recv(WAIT).await {
                Ok(test_support::WsFrame::Closed { .. }) | Err(_) => return Ok(()),
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the client sees the connection end");

    let missed = publish_run(&b, topic, 2..4).await?;
    let mut ws = ws_streams(&c, &[("f", topic)], Some(&ws_cursor)).await?;
    let mut sse = sse_stream(&b, topic, Some(&sse_cursor)).await?;
    assert_eq!(
        ids(&ws_events(&mut ws, &["f"], topic, 2).await?["f"]),
        missed
    );
    assert_eq!(ids(&sse_events(&mut sse, topic, 2).await?), missed);
    let live = publish_ok(&c, topic, json!("live")).await?;
    assert_eq!(
        ids(&ws_events(&mut ws, &["f"], topic, 1).await?["f"]),
        vec![live.clone()]
    );
    assert_eq!(ids(&sse_events(&mut sse, topic, 1).await?), vec![live]);
    Ok(())
}

/// The broker loses its store while running: streams get `gap`, the epoch
/// changes, and ids keep increasing, so live streams keep receiving.
pub async fn store_lost(kind: Kind) -> anyhow::Result<()> {
    let broker = Broker::start(kind).await?;
    let (a, b, c) = nodes(&broker.url()).await?;
    let topic = "scale_store";
    let mut ws = ws_streams(&b, &[("s", topic)], None).await?;
    let m1 = publish_ok(&a, topic, json!(1)).await?;
    let first = ws_events(&mut ws, &["s"], topic, 1).await?["s"][0].clone();
    assert_eq!(first.id, m1);

    broker.lose_store().await?;
    // Nothing lands in the new store before a node took it up: its id
    // would be read against the old epoch. (Unless node a already took the
    // new store up, which needs its ping and a reconnect first.)
    let (status, body) = publish(&a.http_url(), None, &json!({"topic": topic, "data": 0})).await?;
    let taken_up =
        status == 200 && id_order(body["id"].as_str().unwrap_or_default()) > id_order(&m1);
    assert!(
        status == 503 || taken_up,
        "a publish right after the loss: {status} {body}"
    );
    // Publishes fail until the nodes notice and start a new store.
    let m2 = within(WAIT, "a publish into the new store", async {
        loop {
            let (status, body) =
                publish(&a.http_url(), None, &json!({"topic": topic, "data": 2})).await?;
            if status == 200 {
                return Ok(body["id"].as_str().unwrap_or_default().to_owned());
            }
            anyhow::ensure!(status == 503, "publish: {status} {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await?;
    assert!(
        id_order(&m2) > id_order(&m1),
        "ids keep increasing: {m1} then {m2}"
    );
    // The stream hears of the loss (`gap`) and gets the new message.
    let (mut gap, mut got_m2) = (false, false);
    within(WAIT, "gap and the new message", async {
        while !(gap && got_m2) {
            let f = ws.recv_json_skip_pings(WAIT).await?;
            match f["type"].as_str() {
                Some("gap") => gap = true,
                Some("event") => {
                    let id = cursor_position(f["id"].as_str().unwrap_or_default(), topic);
                    got_m2 |= id.as_deref() == Some(m2.as_str());
                }
                _ => anyhow::bail!("unexpected frame {f}"),
            }
        }
        Ok(())
    })
    .await?;
    for gw in [&a, &b, &c] {
        wait_readyz(gw, 200, BACK_WITHIN).await?;
    }
    let m3 = publish_ok(&c, topic, json!(3)).await?;
    let got = loop {
        let (_, got) = ws_next_after_gap(&mut ws, topic).await?;
        if got.id == m3 {
            break got;
        }
    };
    assert_ne!(epoch(&got.cursor), epoch(&first.cursor), "a new epoch");
    Ok(())
}

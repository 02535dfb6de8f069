//! Attacks on the queues between clients and lambdas (issue 11, point 5),
//! against the real gateway and a lambda in the test whose answers the test
//! holds back (test_support::MockLambda, `Gated`): a `send` flood
//! against a stalled lambda is held back in the client's socket (the
//! gateway's memory stays bounded, and every send arrives, in order, once
//! the lambda answers); clients reconnecting with opens for a stalled
//! lambda cannot make another connection's events fail with `Overloaded`;
//! a connection with its share of lambda events out is no longer read.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use test_support::{
    answer_each, gateway_with_config, publish_many, rss_kib, Metrics, MockHandler, MockLambda,
    MockReply,
};
use test_support::{eventually, within, Gateway, TempDir, WsClient, WAIT};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
/// Bound for waits that follow a lot of lambda round trips.
const LONG: Duration = Duration::from_secs(120);

/// Opens are accepted at once (subscribed, direct, to `params.topic` if
/// given); every request with another event waits for `gate`.
fn gated_lambda(gate: watch::Receiver<bool>) -> MockHandler {
    Arc::new(move |req| {
        let answer = answer_each(req, |e| match e["type"].as_str() {
            Some("open") => {
                let mut a = vec![json!({"type": "accept"})];
                if let Some(t) = e["params"]["topic"].as_str() {
                    a.push(json!({"type": "subscribe", "topic": t, "deliver": "direct"}));
                }
                a
            }
            _ => vec![],
        });
        let only_opens = req["events"]
            .as_array()
            .is_some_and(|es| es.iter().all(|e| e["type"] == "open"));
        if only_opens {
            MockReply::Json(answer)
        } else {
            MockReply::Gated(gate.clone(), Box::new(MockReply::Json(answer)))
        }
    })
}

/// App `chat` on `lambda` (and `app`'s keys): calls held for minutes are
/// not timed out or retried. `limits`: TOML before it.
async fn start(
    dir: &TempDir,
    lambda: &MockLambda,
    limits: &str,
    app: &str,
) -> anyhow::Result<Gateway> {
    let config = format!(
        "{limits}\n[apps.chat]\nlambda = \"{}\"\ntimeout_ms = 300000\nretries = 0\n{app}\n",
        lambda.url()
    );
    gateway_with_config(BIN, dir, &config, &[]).await
}

fn client_messages(lambda: &MockLambda) -> Vec<Value> {
    lambda
        .events()
        .into_iter()
        .filter(|e| e["type"] == "client_message")
        .collect()
}

/// The next frame of type `want` the reader passed on.
async fn next_of(
    frames: &mut tokio::sync::mpsc::UnboundedReceiver<Value>,
    want: &str,
) -> anyhow::Result<Value> {
    within(WAIT, want, async {
        while let Some(v) = frames.recv().await {
            if v["type"] == want {
                return Ok(v);
            }
        }
        anyhow::bail!("the connection ended")
    })
    .await
}

/// Polls `/metrics` until the node-wide sample `name` satisfies `pred`.
async fn node_metric(
    url: &str,
    name: &str,
    limit: Duration,
    pred: impl Fn(f64) -> bool,
) -> anyhow::Result<()> {
    within(limit, name, async {
        while !pred(Metrics::fetch(url).await?.node(name)) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    })
    .await
}

/// Waits until `progress` stops moving (unchanged for 2 s); its value.
async fn settled(progress: &AtomicUsize, total: usize) -> anyhow::Result<usize> {
    within(LONG, "the flood's writes to stop or end", async {
        let (mut last, mut still) = (usize::MAX, 0);
        loop {
            let now = progress.load(Ordering::SeqCst);
            if now == total {
                return Ok(now);
            }
            still = if now == last { still + 1 } else { 0 };
            if still >= 8 {
                return Ok(now);
            }
            last = now;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await
}

#[tokio::test]
async fn a_send_flood_against_a_stalled_lambda_is_held_in_the_socket_and_nothing_is_lost(
) -> anyhow::Result<()> {
    const SENDS: usize = 4096;
    const PAD: usize = 12 * 1024; // 48 MiB in all
    let (open_gate, gate) = watch::channel(false);
    let lambda = MockLambda::start(gated_lambda(gate)).await?;
    let dir = TempDir::new("attack-streams-send")?;
    let gw = start(&dir, &lambda, "", "").await?;
    let pid = gw.pid().expect("gateway running");

    let (ws, _) = tokio_tungstenite::connect_async(gw.ws_url("/v1/ws")).await?;
    let (mut tx, mut rx) = ws.split();
    let open =
        json!({"type": "open", "stream": "s", "app": "chat", "params": {"topic": "flood/news"}});
    tx.send(Message::Text(open.to_string())).await?;
    // Every frame from the gateway, as JSON, in a channel.
    let (frames_tx, mut frames) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = rx.next().await {
            if let Message::Text(t) = msg {
                if let Ok(v) = serde_json::from_str(&t) {
                    let _ = frames_tx.send(v);
                }
            }
        }
    });
    assert_eq!(next_of(&mut frames, "opened").await?["stream"], "s");
    let before = rss_kib(pid).unwrap_or_default();

    let progress = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn({
        let progress = progress.clone();
        async move {
            let pad = "x".repeat(PAD);
            for n in 0..SENDS {
                let frame = json!({"type": "send", "stream": "s", "data": {"n": n, "pad": pad}});
                tx.send(Message::Text(frame.to_string())).await?;
                progress.store(n + 1, Ordering::SeqCst);
            }
            anyhow::Ok(tx)
        }
    });
    // Today's main reads it all (and closes the stream as a slow consumer
    // at 1024 queued sends): the writes never block.
    let written = settled(&progress, SENDS).await?;
    eprintln!("{written} of {SENDS} sends written before the writes blocked");
    assert!(
        written < SENDS,
        "every write went through: nothing held back"
    );
    let during = rss_kib(pid).unwrap_or(u64::MAX);
    assert!(
        during < before + 32 * 1024,
        "RSS grew from {before} KiB to {during} KiB"
    );
    let m = Metrics::fetch(&gw.http_url()).await?;
    assert!(m.node("switchboard_reads_paused") >= 1.0);
    // Meanwhile the gateway still writes to this client, and serves others.
    publish_many(&gw.http_url(), "flood/news", &[json!("while paused")]).await?;
    assert_eq!(next_of(&mut frames, "event").await?["data"], "while paused");
    let mut other = WsClient::connect(&gw.ws_url("/v1/ws")).await?;
    let reply = other.open("o", "chat", json!({})).await?;
    assert_eq!(reply["type"], "opened", "{reply}");

    // The lambda answers: every send reaches it, in order.
    open_gate.send(true)?;
    let tx = within(LONG, "the flood's writes to finish", async {
        writer.await?
    })
    .await?;
    // One request per send (one event in flight per stream), and the two opens.
    eventually(LONG, "every send at the lambda", || {
        (lambda.request_count() >= SENDS + 2).then_some(())
    })
    .await?;
    let got = client_messages(&lambda);
    let order: Vec<u64> = got.iter().filter_map(|e| e["data"]["n"].as_u64()).collect();
    assert_eq!(order, (0..SENDS as u64).collect::<Vec<_>>());
    drop(tx);
    reader.abort();
    Ok(())
}

#[tokio::test]
async fn reconnecting_openers_cannot_make_another_connections_events_fail() -> anyhow::Result<()> {
    /// The dispatcher's queue is 65536 events: more orphaned opens than that.
    const CONNECTIONS: usize = 1400;
    const OPENS: usize = 50;
    let (open_gate, gate) = watch::channel(false);
    let lambda = MockLambda::start(gated_lambda(gate.clone())).await?;
    let dir = TempDir::new("attack-streams-queue")?;
    // One call at a time: one held call stalls the app.
    let gw = start(&dir, &lambda, "", "max_concurrency = 1").await?;
    let url = gw.http_url();

    let mut victim = WsClient::connect(&gw.ws_url("/v1/ws")).await?;
    let reply = victim.open("v", "chat", json!({})).await?;
    assert_eq!(reply["type"], "opened", "{reply}");

    // From now on every call waits, opens too.
    let stall = gate.clone();
    lambda.set_handler(Arc::new(move |req| {
        let answer = answer_each(req, |e| match e["type"].as_str() {
            Some("open") => vec![json!({"type": "accept"})],
            _ => vec![],
        });
        MockReply::Gated(stall.clone(), Box::new(MockReply::Json(answer)))
    }));
    let ws_url = gw.ws_url("/v1/ws");
    let attackers: Vec<_> = (0..4)
        .map(|k| {
            let ws_url = ws_url.clone();
            tokio::spawn(async move {
                for c in (k..CONNECTIONS).step_by(4) {
                    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await?;
                    for i in 0..OPENS {
                        let open = json!({"type": "open", "stream": format!("{c}-{i}"), "app": "chat", "params": {}});
                        ws.feed(Message::Text(open.to_string())).await?;
                    }
                    ws.flush().await?;
                    // Gone before any answer.
                    drop(ws);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for a in attackers {
        within(LONG, "the attacking connections", async { a.await? }).await?;
    }
    // Every attacker's connection has ended at the gateway.
    node_metric(&url, "switchboard_connections", LONG, |v| v <= 1.0).await?;
    let queued = Metrics::fetch(&url).await?.app("lambda_queue", "chat");
    assert!(queued > 0.0, "the attack queued events");

    // The victim's event is taken, and reaches the lambda once it answers.
    victim
        .send_json(&json!({"type": "send", "stream": "v", "data": {"victim": true}}))
        .await?;
    open_gate.send(true)?;
    eventually(LONG, "the victim's send at the lambda", || {
        client_messages(&lambda)
            .iter()
            .any(|e| e["data"]["victim"] == true)
            .then_some(())
    })
    .await?;
    let m = Metrics::fetch(&url).await?;
    assert_eq!(m.app("lambda_overloaded", "chat"), 0.0);
    assert!(m.app("lambda_events_shed", "chat") > 0.0);
    Ok(())
}

#[tokio::test]
async fn a_connection_with_its_share_of_lambda_events_out_is_not_read() -> anyhow::Result<()> {
    let (open_gate, gate) = watch::channel(false);
    let lambda = MockLambda::start(gated_lambda(gate.clone())).await?;
    let dir = TempDir::new("attack-streams-share")?;
    let gw = start(
        &dir,
        &lambda,
        "[limits]\nmax_lambda_jobs_per_connection = 2",
        "",
    )
    .await?;
    let mut ws = WsClient::connect(&gw.ws_url("/v1/ws")).await?;
    for s in ["a", "b", "c"] {
        assert_eq!(ws.open(s, "chat", json!({})).await?["type"], "opened");
    }
    // Two sends take the connection's share; the third frame waits unread.
    for s in ["a", "b", "c"] {
        ws.send_json(&json!({"type": "send", "stream": s, "data": {"s": s}}))
            .await?;
    }
    eventually(WAIT, "two sends at the lambda", || {
        (client_messages(&lambda).len() >= 2).then_some(())
    })
    .await?;
    let url = gw.http_url();
    node_metric(&url, "switchboard_reads_paused", WAIT, |v| v >= 1.0).await?;
    assert_eq!(client_messages(&lambda).len(), 2, "the third was not read");
    // Another connection is read as usual.
    let mut other = WsClient::connect(&gw.ws_url("/v1/ws")).await?;
    assert_eq!(other.open("o", "chat", json!({})).await?["type"], "opened");

    open_gate.send(true)?;
    let got = eventually(WAIT, "the third send", || {
        let got = client_messages(&lambda);
        (got.len() >= 3).then_some(got)
    })
    .await?;
    let mut names: Vec<String> = got
        .iter()
        .filter_map(|e| e["data"]["s"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
    Ok(())
}

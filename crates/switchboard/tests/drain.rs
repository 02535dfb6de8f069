//! Drain with a real process and a real signal (SIGTERM, SIGINT): the
//! gateway stops accepting, closes WebSocket streams with `closed` 1012 and
//! the connection with 1012, ends SSE responses with `event: closed` 1012,
//! gives the (PHP) lambda `close` events with reason `shutdown`, flushes the
//! records `buffer` actions left in a file sink, and exits 0 within
//! `drain_timeout_ms`. The close answers' publishes across nodes during a
//! drain: `scale/drain.rs` (run by `scale_nats.rs` and `scale_redis.rs`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::{
    expect_sse_closed, gateway_with_config, process_alive, read_json_lines, Metrics,
};
use test_support::{Gateway, LoggingPhp, SseClient, WsClient, WsFrame, WAIT};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
const APP: &str = "delivery";

/// The gateway with app `delivery` (tests/php/delivery.php: it logs events,
/// and answers client messages and closes with `buffer` actions to sink `s`,
/// a file sink that only a drain flushes).
struct Setup {
    gateway: Gateway,
    lambda: LoggingPhp,
    sink: PathBuf,
}

impl Setup {
    /// `close_sleep_ms`: how long the lambda takes to answer a `close`.
    async fn start(drain_timeout_ms: u64, close_sleep_ms: u64) -> anyhow::Result<Self> {
        let env = [
            ("BUFFER_SINK", "s"),
            ("CLOSE_SLEEP_MS", &close_sleep_ms.to_string()),
        ];
        let lambda = LoggingPhp::start("switchboard-drain", "delivery.php", &env).await?;
        let sink = lambda.dir().path().join("sink.jsonl");
        let config = format!(
            "drain_timeout_ms = {drain_timeout_ms}\n\n\
             [sinks.s]\nkind = \"file\"\npath = \"{}\"\n\
             batch_size = 100000\nflush_interval_ms = 600000\n\n\
             [apps.{APP}]\nlambda = \"{}\"\n",
            sink.display(),
            lambda.url()
        );
        let gateway = gateway_with_config(BIN, lambda.dir(), &config, &[]).await?;
        Ok(Self {
            gateway,
            lambda,
            sink,
        })
    }

    async fn ws(&self, streams: &[(&str, &str)]) -> anyhow::Result<WsClient> {
        let mut ws = WsClient::connect(&self.gateway.ws_url("/v1/ws")).await?;
        for (stream, topic) in streams {
            let reply = ws.open(stream, APP, json!({ "topic": topic })).await?;
            assert_eq!(reply["type"], "opened", "{reply}");
        }
        Ok(ws)
    }

    async fn sse(&self, topic: &str) -> anyhow::Result<SseClient> {
        let sse = SseClient::connect(
            &self.gateway.url(&format!("/v1/sse/{APP}?topic={topic}")),
            &[],
        )
        .await?;
        assert_eq!(sse.status(), 200);
        Ok(sse)
    }

    fn lambda_events(&self, kind: &str) -> Vec<Value> {
        self.lambda.events_of(kind)
    }

    /// The sink's records' `data`, in file order.
    fn sink_records(&self) -> Vec<Value> {
        read_json_lines(&self.sink)
            .into_iter()
            .map(|r| r["data"].clone())
            .collect()
    }
}

/// Reads a WebSocket to its close frame: the `closed` frames, then the close code.
async fn closed_frames(ws: &mut WsClient) -> anyhow::Result<(Vec<Value>, Option<u16>)> {
    let mut closed = Vec::new();
    loop {
        match ws.recv(WAIT).await? {
            WsFrame::Json(v) if v["type"] == "closed" => closed.push(v),
            WsFrame::Closed { code, .. } => return Ok((closed, code)),
            _ => {}
        }
    }
}

/// Checks that each of `streams` got `closed` 1012 ("shutdown"), then close 1012.
async fn expect_ws_drained(ws: &mut WsClient, streams: &[&str]) -> anyhow::Result<()> {
    let (closed, code) = closed_frames(ws).await?;
    let mut names: Vec<&str> = closed.iter().filter_map(|c| c["stream"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, streams, "{closed:?}");
    for c in &closed {
        assert_eq!(c["code"], 1012, "{c}");
        assert_eq!(c["reason"], "shutdown", "{c}");
    }
    assert_eq!(code, Some(1012));
    Ok(())
}

/// Sends a client message on `stream` (the lambda buffers it to the sink).
async fn send(ws: &mut WsClient, stream: &str, k: u64) -> anyhow::Result<()> {
    ws.send_json(&json!({"type": "send", "stream": stream, "data": { "k": k }}))
        .await
}

#[tokio::test]
async fn sigterm_drains_clients_lambda_and_sinks_then_exits_0() -> anyhow::Result<()> {
    const DRAIN_TIMEOUT_MS: u64 = 8_000;
    // The lambda takes a while over the close events: the drain waits for
    // them, and meanwhile the listener is closed.
    let mut setup = Setup::start(DRAIN_TIMEOUT_MS, 1_000).await?;
    let pid = setup.gateway.pid().expect("running");
    let addr = setup.gateway.addr();
    let mut ws1 = setup.ws(&[("a", "x"), ("b", "y")]).await?;
    let mut ws2 = setup.ws(&[("c", "x")]).await?;
    let mut sse = setup.sse("x").await?;

    send(&mut ws1, "a", 1).await?;
    send(&mut ws1, "b", 2).await?;
    send(&mut ws2, "c", 3).await?;
    let url = setup.gateway.http_url();
    test_support::wait_app_metric(&url, "sink_records", APP, WAIT, |v| v >= 3.0).await?;
    assert!(
        setup.sink_records().is_empty(),
        "records are buffered, not yet written"
    );

    let signalled = Instant::now();
    setup.gateway.signal("TERM")?;
    expect_ws_drained(&mut ws1, &["a", "b"]).await?;
    expect_ws_drained(&mut ws2, &["c"]).await?;
    expect_sse_closed(&mut sse, 1012).await?;

    // Still draining (the lambda is slow over the close events), and no
    // longer accepting connections.
    let refused = tokio::net::TcpStream::connect(addr).await.is_err();
    let alive = process_alive(pid);
    assert!(refused, "a new connection was accepted during the drain");
    assert!(
        alive,
        "the gateway exited before the check could mean anything"
    );

    let status = setup
        .gateway
        .wait_exit(Duration::from_millis(DRAIN_TIMEOUT_MS + 2_000))
        .await?;
    assert!(status.success(), "{status}");
    assert!(
        signalled.elapsed() < Duration::from_millis(DRAIN_TIMEOUT_MS),
        "exit after {:?}",
        signalled.elapsed()
    );

    // The lambda got a `close` with `shutdown` for each of the 4 streams.
    let closes = setup.lambda_events("close");
    assert_eq!(closes.len(), 4, "{closes:?}");
    assert!(
        closes.iter().all(|c| c["reason"] == "shutdown"),
        "{closes:?}"
    );

    // The sink got what was buffered: the client messages, then the close
    // answers' records.
    let records = setup.sink_records();
    let mut ks: Vec<u64> = records
        .iter()
        .filter(|r| r["kind"] == "client_message")
        .filter_map(|r| r["data"]["k"].as_u64())
        .collect();
    ks.sort_unstable();
    assert_eq!(ks, [1, 2, 3], "{records:?}");
    let closes: Vec<&Value> = records.iter().filter(|r| r["kind"] == "close").collect();
    assert_eq!(closes.len(), 4, "{records:?}");
    assert!(
        closes.iter().all(|r| r["reason"] == "shutdown"),
        "{records:?}"
    );
    Ok(())
}

#[tokio::test]
async fn sigint_drains_the_same_way() -> anyhow::Result<()> {
    let mut setup = Setup::start(5_000, 0).await?;
    let mut ws = setup.ws(&[("a", "x")]).await?;
    let mut sse = setup.sse("x").await?;
    send(&mut ws, "a", 7).await?;
    let url = setup.gateway.http_url();
    test_support::wait_app_metric(&url, "sink_records", APP, WAIT, |v| v >= 1.0).await?;
    let metrics = Metrics::fetch(&url).await?;
    assert_eq!(metrics.app("streams", APP), 2.0);

    setup.gateway.signal("INT")?;
    expect_ws_drained(&mut ws, &["a"]).await?;
    expect_sse_closed(&mut sse, 1012).await?;
    let status = setup.gateway.wait_exit(Duration::from_secs(7)).await?;
    assert!(status.success(), "{status}");

    let closes = setup.lambda_events("close");
    assert_eq!(closes.len(), 2, "{closes:?}");
    assert!(
        closes.iter().all(|c| c["reason"] == "shutdown"),
        "{closes:?}"
    );
    let records = setup.sink_records();
    assert!(
        records
            .iter()
            .any(|r| r["kind"] == "client_message" && r["data"]["k"] == 7),
        "{records:?}"
    );
    assert_eq!(
        records.iter().filter(|r| r["kind"] == "close").count(),
        2,
        "{records:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_lambda_that_hangs_over_close_events_cannot_hold_the_exit_past_the_drain_timeout(
) -> anyhow::Result<()> {
    const DRAIN_TIMEOUT_MS: u64 = 1_500;
    let mut setup = Setup::start(DRAIN_TIMEOUT_MS, 30_000).await?;
    let mut ws = setup.ws(&[("a", "x"), ("b", "x")]).await?;
    let signalled = Instant::now();
    setup.gateway.signal("TERM")?;
    expect_ws_drained(&mut ws, &["a", "b"]).await?;
    let status = setup.gateway.wait_exit(Duration::from_secs(10)).await?;
    let took = signalled.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took < Duration::from_millis(DRAIN_TIMEOUT_MS + 1_500),
        "exit {took:?} after the signal, drain timeout {DRAIN_TIMEOUT_MS} ms"
    );
    // The close events did reach the lambda (it was just slow to answer).
    setup
        .lambda
        .wait_for("close", "close events at the lambda")
        .await?;
    Ok(())
}

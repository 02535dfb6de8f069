//! Slow consumers against the real gateway: one client that never reads
//! while 1,000 others receive every message of a stream of publishes. The
//! 1,000 get everything, in order; the slow one is closed by the policy
//! `close` (its stream ends with `slow_consumer`, counted), or with
//! `drop_oldest` it sees a `gap` once it reads; the gateway's memory stays
//! bounded meanwhile. An SSE client that never reads is closed by the policy
//! too, while its task waits to hand the body a chunk.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use test_support::{eventually, Gateway, LoggingPhp, WsClient, WAIT};
use test_support::{gateway_with_config, publish_many, raw_get, rss_kib, Metrics, RawFrame, RawWs};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
/// Topic messages queued per connection before the policy applies.
const QUEUE: usize = 64;
/// Generous fixed ceiling for the gateway's RSS with ~1,000 connections.
const RSS_CEILING_KIB: u64 = 512 * 1024;
/// How much RSS may grow between two checkpoints of the same load.
const RSS_GROWTH_KIB: u64 = 64 * 1024;

/// The direct app `pubsub` for the readers, and the PHP app `delivery`
/// (which logs its events) for the slow client, so that its `close` shows.
struct Setup {
    gateway: Gateway,
    lambda: LoggingPhp,
}

impl Setup {
    async fn start(policy: &str) -> anyhow::Result<Self> {
        let lambda = LoggingPhp::start("switchboard-slow", "delivery.php", &[]).await?;
        // The write timeout and keepalive are far away: only the
        // slow-consumer policy may act within the test's time.
        let config = format!(
            "[limits]\noutbound_queue = {QUEUE}\nslow_consumer = \"{policy}\"\n\
             write_timeout_ms = 60000\nkeepalive_ms = 60000\n\n\
             [apps.pubsub]\nlambda = \"direct\"\ntopics = [\"main\"]\n\n[apps.delivery]\nlambda = \"{}\"\n",
            lambda.url()
        );
        let gateway = gateway_with_config(BIN, lambda.dir(), &config, &[]).await?;
        Ok(Self { gateway, lambda })
    }

    fn pid(&self) -> u32 {
        self.gateway.pid().expect("gateway running")
    }

    fn rss(&self) -> u64 {
        rss_kib(self.pid()).expect("gateway RSS")
    }

    fn lambda_events(&self, kind: &str) -> Vec<Value> {
        self.lambda.events_of(kind)
    }

    /// A client that reads nothing, on `main` and `filler`, with a tiny
    /// receive buffer; then enough `filler` to stop the gateway's writes to it.
    async fn stalled_client(&self) -> anyhow::Result<RawWs> {
        let slow = RawWs::connect(
            self.gateway.addr(),
            "/v1/ws?app=delivery&topic=main,filler&deliver=direct",
            Some(4096),
        )
        .await?;
        self.lambda
            .wait_for("open", "the slow client's open at the lambda")
            .await?;
        // 12 MB: more than the socket buffers hold (the sender's may grow to 4 MiB).
        publish_many(&self.gateway.http_url(), "filler", &filler(200)).await?;
        Ok(slow)
    }
}

/// `n` messages of 60 KB for the topic `filler`.
fn filler(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"i": i, "pad": "x".repeat(60_000)}))
        .collect()
}

/// `n` WebSocket readers of `main` (stream "0" via the `?app=` shortcut),
/// each in its own task, checking that message k+1 follows k.
struct Readers {
    received: Vec<Arc<AtomicU64>>,
    failed: Arc<AtomicBool>,
    errors: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Readers {
    async fn connect(gateway: &Gateway, n: usize) -> anyhow::Result<Self> {
        let url = gateway.ws_url("/v1/ws?app=pubsub&topic=main");
        let mut clients = Vec::with_capacity(n);
        for start in (0..n).step_by(50) {
            let batch = (start..n.min(start + 50)).map(|_| async {
                let mut ws = WsClient::connect(&url).await?;
                let opened = ws.open_reply("0").await?;
                anyhow::ensure!(opened["type"] == "opened", "{opened}");
                Ok::<_, anyhow::Error>(ws)
            });
            for ws in futures_util::future::join_all(batch).await {
                clients.push(ws?);
            }
        }
        let failed = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let mut received = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        for (i, mut ws) in clients.into_iter().enumerate() {
            let count = Arc::new(AtomicU64::new(0));
            received.push(count.clone());
            let (failed, errors) = (failed.clone(), errors.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let frame = match ws.recv_json(Duration::from_secs(60)).await {
                        Ok(f) => f,
                        Err(e) => {
                            errors
                                .lock()
                                .expect("lock")
                                .push(format!("reader {i}: {e:#}"));
                            failed.store(true, Ordering::Relaxed);
                            return;
                        }
                    };
                    if frame["type"] != "event" {
                        errors
                            .lock()
                            .expect("lock")
                            .push(format!("reader {i}: {frame}"));
                        failed.store(true, Ordering::Relaxed);
                        return;
                    }
                    let want = count.load(Ordering::Relaxed) + 1;
                    if frame["data"]["n"] != want {
                        errors
                            .lock()
                            .expect("lock")
                            .push(format!("reader {i}: wanted {want}, got {frame}"));
                        failed.store(true, Ordering::Relaxed);
                        return;
                    }
                    count.store(want, Ordering::Relaxed);
                }
            }));
        }
        Ok(Self {
            received,
            failed,
            errors,
            tasks,
        })
    }

    fn min(&self) -> u64 {
        self.received
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Waits until every reader has `n` messages (or one failed).
    async fn wait_for(&self, n: u64, limit: Duration) -> anyhow::Result<()> {
        eventually(limit, &format!("every reader to get {n} messages"), || {
            (self.failed.load(Ordering::Relaxed) || self.min() >= n).then_some(())
        })
        .await?;
        let errors = self.errors.lock().expect("lock");
        anyhow::ensure!(
            errors.is_empty(),
            "readers failed: {:?}",
            &errors[..errors.len().min(5)]
        );
        Ok(())
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Publishes `{"n": k}` on `main` for k in `from..=to`, in batches of 10,
/// never more than 20 ahead of the slowest reader (so the readers' queues
/// stay far below the bound whatever the machine's speed).
async fn publish_paced(
    gateway: &Gateway,
    readers: &Readers,
    from: u64,
    to: u64,
) -> anyhow::Result<()> {
    let mut next = from;
    while next <= to {
        readers
            .wait_for(next.saturating_sub(21), Duration::from_secs(60))
            .await?;
        let last = (next + 9).min(to);
        let datas: Vec<Value> = (next..=last).map(|n| json!({ "n": n })).collect();
        publish_many(&gateway.http_url(), "main", &datas).await?;
        next = last + 1;
    }
    readers.wait_for(to, Duration::from_secs(60)).await
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_while_1000_others_get_everything() -> anyhow::Result<()>
{
    const READERS: usize = 1_000;
    const MESSAGES: u64 = 300;
    let setup = Setup::start("close").await?;
    let gw = &setup.gateway;
    let readers = Readers::connect(gw, READERS).await?;
    let _slow = setup.stalled_client().await?;

    publish_paced(gw, &readers, 1, MESSAGES / 3).await?;
    let rss_first = setup.rss();
    publish_paced(gw, &readers, MESSAGES / 3 + 1, MESSAGES).await?;
    let rss_second = setup.rss();
    eprintln!("gateway RSS: {rss_first} KiB, then {rss_second} KiB");
    assert!(rss_second < RSS_CEILING_KIB, "RSS {rss_second} KiB");
    assert!(
        rss_second < rss_first + RSS_GROWTH_KIB,
        "RSS grew from {rss_first} to {rss_second} KiB"
    );

    // The slow client fell more than the queue behind on `main`: its stream
    // is closed for it, with `slow_consumer`, well before the write timeout.
    let reason = setup.lambda.close_reason(Duration::from_secs(75)).await?;
    assert_eq!(reason, "slow_consumer");
    let metrics = Metrics::fetch(&gw.http_url()).await?;
    assert_eq!(metrics.app("slow_consumer_closes", "delivery"), 1.0);
    assert_eq!(metrics.app("slow_consumer_closes", "pubsub"), 0.0);
    assert_eq!(metrics.app("streams", "pubsub"), READERS as f64);
    // Nobody else was disturbed.
    readers.wait_for(MESSAGES, WAIT).await?;
    Ok(())
}

#[tokio::test]
async fn with_drop_oldest_a_slow_reader_gets_a_gap_then_the_newest() -> anyhow::Result<()> {
    const MESSAGES: u64 = 500;
    let setup = Setup::start("drop_oldest").await?;
    let gw = &setup.gateway;
    let readers = Readers::connect(gw, 20).await?;
    let mut slow = setup.stalled_client().await?;
    publish_paced(gw, &readers, 1, MESSAGES).await?;

    // Now it reads: the filler, a gap for `main`, then main's newest messages.
    let mut gap_seen = false;
    let mut last_main = 0;
    let mut mains = 0;
    while last_main < MESSAGES {
        let text = match slow.recv(Duration::from_secs(20)).await? {
            RawFrame::Text(t) => t,
            RawFrame::Close(code) => anyhow::bail!("closed ({code:?}) before message {MESSAGES}"),
            _ => continue,
        };
        let frame: Value = serde_json::from_str(&text)?;
        match frame["type"].as_str() {
            Some("gap") => {
                // The filler overflowed the queue too.
                let topics = frame["topics"].as_array().expect("topics");
                assert!(
                    topics.iter().all(|t| t == "main" || t == "filler"),
                    "{frame}"
                );
                gap_seen |= topics.iter().any(|t| t == "main");
            }
            Some("event") if frame["topic"] == "main" => {
                let n = frame["data"]["n"].as_u64().expect("n");
                assert!(n > last_main, "{n} after {last_main}");
                last_main = n;
                mains += 1;
            }
            _ => {}
        }
    }
    assert!(gap_seen, "no gap frame for main");
    assert!(
        mains < MESSAGES,
        "nothing was dropped ({mains} main messages)"
    );
    // Every `main` message the slow reader missed is counted as a drop (and
    // so are the filler's: at least as many as main's).
    let metrics = Metrics::fetch(&gw.http_url()).await?;
    let dropped = metrics.app("drops_slow_consumer", "delivery");
    assert!(
        dropped >= (MESSAGES - mains) as f64,
        "{dropped} drops counted; {mains} of {MESSAGES} main messages arrived"
    );
    assert_eq!(metrics.app("drops_slow_consumer", "pubsub"), 0.0);
    // The stream is still open: the policy drops, it does not close.
    assert!(setup.lambda_events("close").is_empty());
    Ok(())
}

#[tokio::test]
async fn an_sse_client_that_never_reads_is_closed_with_slow_consumer() -> anyhow::Result<()> {
    let setup = Setup::start("close").await?;
    let gw = &setup.gateway;
    // Connected, then never read, with a tiny receive buffer.
    let _sse = raw_get(
        gw.addr(),
        "/v1/sse/delivery?topic=filler&deliver=direct",
        &[("Accept", "text/event-stream")],
        4096,
    )
    .await?;
    setup
        .lambda
        .wait_for("open", "the SSE client's open at the lambda")
        .await?;
    // 24 MB: the socket buffers and the response body's chunks fill, then
    // more than the queue waits in the outbox while a chunk waits for room.
    publish_many(&gw.http_url(), "filler", &filler(400)).await?;
    // The write timeout is a minute away: only the policy can act in time.
    assert_eq!(setup.lambda.close_reason(WAIT).await?, "slow_consumer");
    let metrics = Metrics::fetch(&gw.http_url()).await?;
    assert_eq!(metrics.app("slow_consumer_closes", "delivery"), 1.0);
    Ok(())
}

//! Client-to-server buffering with a real PHP lambda
//! (tests/php/capabilities.php answers `{"cmd":"buffer"}` client messages
//! with `buffer` actions): a rotating JSON-lines file sink, an HTTP sink
//! whose far end is `php -S tests/php/sink_receiver.php`, batched by size
//! and interval, a receiver that is down (records within `max_buffer` kept
//! and delivered once it is up; past it the oldest dropped and counted), and
//! `buffer` / `publish` actions answering a `close` event.

mod caps;

use std::path::Path;
use std::time::Duration;

use caps::{command, next_event, wait_metric, Caps};
use serde_json::{json, Value};
use test_support::php_script;
use test_support::read_json_lines;
use test_support::{eventually, free_port, PhpServer, WsClient, WAIT};

/// Asks the lambda to buffer `records` to `sink` in one answer.
async fn buffer(ws: &mut WsClient, sink: &str, records: &[Value]) -> anyhow::Result<()> {
    command(
        ws,
        "s",
        json!({"cmd": "buffer", "sink": sink, "records": records}),
    )
    .await
    .map(|_| ())
}

/// The records of a file sink, oldest first: `path.N` .. `path.1`, then `path`.
fn file_records(path: &Path, keep: u32) -> Vec<Value> {
    let mut all = Vec::new();
    for i in (1..=keep).rev() {
        all.extend(read_json_lines(&path.with_file_name(format!(
            "{}.{i}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or_default()
        ))));
    }
    all.extend(read_json_lines(path));
    all
}

/// `sink_<name>{sink="<sink>"}` from `/metrics`.
async fn sink_metric(caps: &Caps, name: &str, sink: &str) -> anyhow::Result<f64> {
    let m = caps.metrics().await?;
    let sample = format!("switchboard_sink_{name}{{sink=\"{sink}\"}}");
    anyhow::ensure!(m.has(&sample), "/metrics has no {sample}");
    Ok(m.node(&sample))
}

async fn wait_sink_metric(
    caps: &Caps,
    name: &str,
    sink: &str,
    pred: impl Fn(f64) -> bool,
) -> anyhow::Result<f64> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = sink_metric(caps, name, sink).await?;
        if pred(v) {
            return Ok(v);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "sink {sink}: {name} is {v} after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_file_sink_writes_json_lines_and_rotates() -> anyhow::Result<()> {
    let caps = Caps::start_with(
        |dir| {
            format!(
                "[sinks.audit]\nkind = \"file\"\npath = \"{}\"\nmax_bytes = 300\nkeep = 20\n\
                 batch_size = 4\nflush_interval_ms = 100\n\n\
                 [sinks.small]\nkind = \"file\"\npath = \"{}\"\nmax_bytes = 200\nkeep = 1\n\
                 batch_size = 2\nflush_interval_ms = 100\n",
                dir.join("audit.jsonl").display(),
                dir.join("small.jsonl").display()
            )
        },
        &[],
    )
    .await?;
    let audit = caps.dir().join("audit.jsonl");
    let small = caps.dir().join("small.jsonl");
    let mut ws = caps.open("s", json!({"tag": "f"})).await?;
    let stream_id = eventually(WAIT, "the open event", || {
        caps.events("open", "f").into_iter().next()
    })
    .await?["stream"]
        .clone();

    // In several answers, so that both size and interval flushes happen.
    for chunk in 0..5 {
        let records: Vec<Value> = (0..6)
            .map(|i| json!({"n": chunk * 6 + i, "text": "x".repeat(20)}))
            .collect();
        buffer(&mut ws, "audit", &records).await?;
        buffer(&mut ws, "small", &records).await?;
    }
    wait_sink_metric(&caps, "records_written", "audit", |v| v >= 30.0).await?;
    wait_sink_metric(&caps, "records_written", "small", |v| v >= 30.0).await?;

    let records = file_records(&audit, 20);
    let ns: Vec<u64> = records
        .iter()
        .filter_map(|r| r["data"]["n"].as_u64())
        .collect();
    assert_eq!(
        ns,
        (0..30).collect::<Vec<_>>(),
        "every record once, in order"
    );
    for r in &records {
        assert_eq!(r["app"], caps::APP, "{r}");
        assert_eq!(r["stream"], stream_id, "{r}");
        assert!(r["at_ms"].as_u64().is_some_and(|t| t > 0), "{r}");
    }
    // Rotated at 300 bytes: no file grew far past it (a flush writes up to
    // 4 records of ~90 bytes after the size check).
    assert!(audit.with_file_name("audit.jsonl.1").exists());
    for i in 1..=20 {
        let p = audit.with_file_name(format!("audit.jsonl.{i}"));
        if let Ok(meta) = std::fs::metadata(&p) {
            assert!(
                meta.len() < 300 + 4 * 120,
                "{} is {} bytes",
                p.display(),
                meta.len()
            );
        }
    }
    // keep = 1: only `small.jsonl` and `small.jsonl.1`; older ones are gone.
    assert!(small.with_file_name("small.jsonl.1").exists());
    assert!(!small.with_file_name("small.jsonl.2").exists());
    let kept = file_records(&small, 1);
    assert!(kept.len() < 30, "rotated-out records are gone");
    assert_eq!(
        kept.last().map(|r| r["data"]["n"].clone()),
        Some(json!(29)),
        "the newest are kept"
    );

    assert_eq!(caps.metric("sink_records").await?, 60.0);
    assert_eq!(sink_metric(&caps, "records_in", "audit").await?, 30.0);
    assert_eq!(sink_metric(&caps, "records_dropped", "audit").await?, 0.0);
    assert_eq!(sink_metric(&caps, "flush_failures", "audit").await?, 0.0);
    Ok(())
}

/// The batches an HTTP sink's receiver got, one JSON array each.
fn received(log: &Path) -> Vec<Vec<Value>> {
    read_json_lines(log)
        .into_iter()
        .map(|b| b.as_array().cloned().unwrap_or_default())
        .collect()
}

fn received_ns(batches: &[Vec<Value>]) -> Vec<u64> {
    batches
        .iter()
        .flatten()
        .filter_map(|r| r["data"]["n"].as_u64())
        .collect()
}

fn http_sink(name: &str, port: u16, batch: usize, interval_ms: u64, max_buffer: usize) -> String {
    format!(
        "[sinks.{name}]\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/\"\ntimeout_ms = 1000\n\
         batch_size = {batch}\nflush_interval_ms = {interval_ms}\nmax_buffer = {max_buffer}\n"
    )
}

/// `tests/php/sink_receiver.php` on `port`, logging what it receives to `got`.
async fn receiver(port: u16, got: &Path) -> anyhow::Result<PhpServer> {
    PhpServer::start_on_port(
        port,
        &php_script("sink_receiver.php"),
        &[("RECEIVER_LOG", got.to_str().expect("UTF-8 path"))],
    )
    .await
}

#[tokio::test]
async fn an_http_sink_posts_batches_on_size_and_on_interval() -> anyhow::Result<()> {
    let dir = test_support::TempDir::new("switchboard-sink-receiver")?;
    let got = dir.path().join("received.jsonl");
    let port = free_port();
    let _receiver = receiver(port, &got).await?;
    let caps = Caps::start_with(|_| http_sink("events", port, 5, 300, 1000), &[]).await?;
    let mut ws = caps.open("s", json!({"tag": "h"})).await?;

    // 12 records in one answer: two POSTs of 5 (size), 2 more on the interval.
    let records: Vec<Value> = (0..12).map(|n| json!({ "n": n })).collect();
    buffer(&mut ws, "events", &records).await?;
    let batches = eventually(WAIT, "12 records at the receiver", || {
        let b = received(&got);
        (received_ns(&b).len() >= 12).then_some(b)
    })
    .await?;
    assert_eq!(received_ns(&batches), (0..12).collect::<Vec<_>>());
    assert!(
        batches.iter().all(|b| !b.is_empty() && b.len() <= 5),
        "{batches:?}"
    );
    assert!(batches.len() >= 3, "{batches:?}");
    assert!(batches.iter().flatten().all(|r| r["app"] == caps::APP));

    // A few trickling in, fewer than a batch: the interval sends them.
    buffer(&mut ws, "events", &[json!({"n": 12}), json!({"n": 13})]).await?;
    eventually(WAIT, "the interval flush", || {
        (received_ns(&received(&got)).len() >= 14).then_some(())
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(received_ns(&received(&got)), (0..14).collect::<Vec<_>>());
    assert_eq!(sink_metric(&caps, "records_written", "events").await?, 14.0);
    assert_eq!(sink_metric(&caps, "flush_failures", "events").await?, 0.0);
    Ok(())
}

#[tokio::test]
async fn an_http_sink_that_is_down_delivers_what_it_kept_once_up() -> anyhow::Result<()> {
    let port = free_port();
    let caps = Caps::start_with(|_| http_sink("late", port, 5, 100, 10), &[]).await?;
    let got = caps.dir().join("received.jsonl");
    let mut ws = caps.open("s", json!({"tag": "d"})).await?;

    // Within max_buffer: kept while the receiver is down.
    let records: Vec<Value> = (0..8).map(|n| json!({ "n": n })).collect();
    buffer(&mut ws, "late", &records).await?;
    wait_sink_metric(&caps, "flush_failures", "late", |v| v >= 2.0).await?;
    assert_eq!(sink_metric(&caps, "records_written", "late").await?, 0.0);

    let _receiver = receiver(port, &got).await?;
    wait_sink_metric(&caps, "records_written", "late", |v| v >= 8.0).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        received_ns(&received(&got)),
        (0..8).collect::<Vec<_>>(),
        "each kept record once, in order"
    );
    assert_eq!(sink_metric(&caps, "records_dropped", "late").await?, 0.0);
    Ok(())
}

#[tokio::test]
async fn an_http_sink_past_max_buffer_drops_the_oldest_and_counts_them() -> anyhow::Result<()> {
    let port = free_port();
    let caps = Caps::start_with(
        |_| {
            format!(
                "admin_key = \"adm\"\n\n{}",
                http_sink("late", port, 5, 100, 10)
            )
        },
        &[],
    )
    .await?;
    let got = caps.dir().join("received.jsonl");
    let mut ws = caps.open("s", json!({"tag": "o"})).await?;

    // 25 records while down, in five answers: 10 kept, 15 dropped.
    for chunk in 0..5 {
        let records: Vec<Value> = (0..5).map(|i| json!({ "n": chunk * 5 + i })).collect();
        buffer(&mut ws, "late", &records).await?;
    }
    wait_sink_metric(&caps, "records_in", "late", |v| v >= 25.0).await?;
    let dropped = wait_sink_metric(&caps, "records_dropped", "late", |v| v >= 15.0).await?;
    assert_eq!(dropped, 15.0);
    assert_eq!(caps.metric("sink_records").await?, 25.0);

    let _receiver = receiver(port, &got).await?;
    wait_sink_metric(&caps, "records_written", "late", |v| v >= 10.0).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        received_ns(&received(&got)),
        (15..25).collect::<Vec<_>>(),
        "the newest max_buffer records, once each"
    );
    assert_eq!(sink_metric(&caps, "records_dropped", "late").await?, 15.0);

    // The admin API shows the same figures.
    let admin = admin_sinks(&caps).await?;
    assert_eq!(admin["late"]["records_dropped"], 15, "{admin}");
    assert_eq!(admin["late"]["records_written"], 10, "{admin}");
    Ok(())
}

#[tokio::test]
async fn an_http_sink_past_max_buffer_bytes_drops_the_oldest_and_counts_them() -> anyhow::Result<()>
{
    let port = free_port();
    // Room for 100 records by count but 4 KiB by bytes: three of ~1 KiB.
    let caps = Caps::start_with(
        |_| {
            format!(
                "{}max_buffer_bytes = 4096\n",
                http_sink("big", port, 50, 100, 100)
            )
        },
        &[],
    )
    .await?;
    let got = caps.dir().join("received.jsonl");
    let mut ws = caps.open("s", json!({"tag": "b"})).await?;
    let pad = "p".repeat(1000);
    for chunk in 0..4 {
        let records: Vec<Value> = (0..5)
            .map(|i| json!({ "n": chunk * 5 + i, "pad": pad }))
            .collect();
        buffer(&mut ws, "big", &records).await?;
    }
    wait_sink_metric(&caps, "records_in", "big", |v| v >= 20.0).await?;
    let dropped = wait_sink_metric(&caps, "records_dropped", "big", |v| v >= 17.0).await?;
    assert_eq!(dropped, 17.0, "4096 bytes hold three records of over 1 KiB");

    let _receiver = receiver(port, &got).await?;
    wait_sink_metric(&caps, "records_written", "big", |v| v >= 3.0).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        received_ns(&received(&got)),
        (17..20).collect::<Vec<_>>(),
        "the newest records that fit, once each"
    );
    assert_eq!(sink_metric(&caps, "records_dropped", "big").await?, 17.0);
    Ok(())
}

async fn admin_sinks(caps: &Caps) -> anyhow::Result<Value> {
    let resp = test_support::http_request(
        "GET",
        &caps.gateway.url("/v1/admin/apps"),
        &[("Authorization", "Bearer adm")],
        None,
    )
    .await?;
    anyhow::ensure!(resp.status == 200, "admin answered {}", resp.status);
    Ok(resp.json()?["sinks"].clone())
}

#[tokio::test]
async fn a_close_events_buffer_and_publish_actions_apply() -> anyhow::Result<()> {
    let caps = Caps::start_with(
        |dir| {
            format!(
                "admin_key = \"adm\"\n\n[sinks.bye]\nkind = \"file\"\npath = \"{}\"\n\
                 batch_size = 100\nflush_interval_ms = 100\n",
                dir.join("bye.jsonl").display()
            )
        },
        &[],
    )
    .await?;
    let watcher_topic = "closes";
    let mut watcher = caps
        .open(
            "w",
            json!({"tag": "watcher", "subs": [{"topic": watcher_topic, "deliver": "direct"}]}),
        )
        .await?;
    let mut ws = caps
        .open(
            "s",
            json!({"tag": "leaver", "close_sink": "bye", "close_publish": watcher_topic}),
        )
        .await?;
    ws.send_json(&json!({"type": "close", "stream": "s"}))
        .await?;
    ws.recv_until(|v| v["type"] == "closed" && v["stream"] == "s", WAIT)
        .await?;

    // The publish reached the other stream; the buffer reached the sink.
    let frame = next_event(&mut watcher, "w").await?;
    assert_eq!(
        frame["data"],
        json!({"closed": "leaver", "reason": "client"})
    );
    let path = caps.dir().join("bye.jsonl");
    let records = eventually(WAIT, "the close record in the sink", || {
        let r = read_json_lines(&path);
        (!r.is_empty()).then_some(r)
    })
    .await?;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        records[0]["data"],
        json!({"kind": "close", "reason": "client"})
    );
    assert_eq!(records[0]["app"], caps::APP);
    wait_metric(&caps, "sink_records", |v| v >= 1.0).await?;
    // Other actions answering a close (the lambda also pushed) are ignored.
    assert_eq!(caps.metric("pushes").await?, 0.0);
    assert_eq!(admin_sinks(&caps).await?["bye"]["records_written"], 1);
    Ok(())
}

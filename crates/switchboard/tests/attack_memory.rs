//! Node-wide memory bounds against the real gateway: a flood of large
//! messages over many topics stays within `history.max_total_bytes` (the
//! `switchboard_history_bytes` gauge and the process's peak RSS), old topics
//! then resume with `gap` while new ones replay whole; per-prefix history
//! bounds; the JetStream stream gets `max_bytes` on a real nats-server.

use std::time::Duration;

use serde_json::{json, Value};
use test_support::brokers::NatsServer;
use test_support::{gateway_with_config, peak_rss_kib, publish_many, Metrics};
use test_support::{get, parse_cursor, publish, Gateway, SseClient, SseEvent, TempDir, WAIT};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// The node total of the flood test: 4 MiB.
const TOTAL: u64 = 4 << 20;
const TOPICS: usize = 96;
const PER_TOPIC: usize = 16;
/// About 60 KiB of `data` each: 16 of them fit a topic's default 1 MiB, so
/// without the node total the flood would keep about 90 MiB.
const DATA_BYTES: usize = 60 * 1024;

/// The epoch of a cursor (its first field).
fn epoch_of(cursor: &str) -> String {
    parse_cursor(cursor).map(|(e, _)| e).unwrap_or_default()
}

/// Resumes `topic` from position `after` over SSE and reads what comes:
/// whether a `gap` came first, and the replayed events, until `want` events
/// arrived or the stream fell quiet for a second after the replay.
async fn resume(
    gw: &Gateway,
    epoch: &str,
    topic: &str,
    after: u64,
    want: usize,
) -> anyhow::Result<(bool, Vec<SseEvent>)> {
    let cursor = format!("{epoch}~{topic}~{after}");
    let url = gw.url(&format!("/v1/sse/pubsub?topic={topic}"));
    let mut sse = SseClient::connect(&url, &[("Last-Event-ID", &cursor)]).await?;
    anyhow::ensure!(sse.status() == 200, "SSE open answered {}", sse.status());
    let mut gap = false;
    let mut events = Vec::new();
    while events.len() < want {
        let wait = if events.is_empty() && !gap {
            WAIT
        } else {
            Duration::from_secs(1)
        };
        let Ok(e) = sse.next_event(wait).await else {
            break;
        };
        match e.event.as_deref() {
            Some("gap") => {
                anyhow::ensure!(events.is_empty(), "gap after events: {e:?}");
                assert_eq!(e.json()?["topics"], json!([topic]), "{e:?}");
                gap = true;
            }
            _ => events.push(e),
        }
    }
    Ok((gap, events))
}

#[tokio::test]
async fn a_flood_over_many_topics_stays_within_the_node_total() -> anyhow::Result<()> {
    let dir = TempDir::new("sb-attack-memory")?;
    let config = format!("[history]\nmax_total_bytes = {TOTAL}\n");
    let gw = gateway_with_config(BIN, &dir, &config, &[]).await?;
    let pid = gw.pid().expect("gateway pid");
    let base = peak_rss_kib(pid).expect("VmHWM of the gateway");

    // A live event gives the node's epoch (cursors are `epoch~topic~id`).
    let mut live = SseClient::connect(&gw.url("/v1/sse/pubsub?topic=t000"), &[]).await?;
    let (status, _) = publish(&gw.http_url(), None, &json!({"topic":"t000","data":0})).await?;
    assert_eq!(status, 200);
    let first = live.next_event(WAIT).await?;
    let epoch = epoch_of(first.id.as_deref().unwrap_or_default());
    assert!(!epoch.is_empty(), "{first:?}");
    drop(live);

    let data = Value::String("m".repeat(DATA_BYTES));
    let datas = vec![data; PER_TOPIC];
    let mut most = 0.0f64;
    for t in 0..TOPICS {
        let topic = format!("t{t:03}");
        let ids = publish_many(&gw.http_url(), &topic, &datas).await?;
        assert_eq!(ids.len(), PER_TOPIC);
        let bytes = Metrics::fetch(&gw.http_url())
            .await?
            .node("switchboard_history_bytes");
        most = most.max(bytes);
        assert!(
            bytes <= TOTAL as f64,
            "history holds {bytes} bytes after topic {t}, over {TOTAL}"
        );
    }
    assert!(
        most > (TOTAL / 2) as f64,
        "the gauge shows the history ({most})"
    );
    let peak = peak_rss_kib(pid).expect("VmHWM of the gateway");
    let grew_mib = peak.saturating_sub(base) / 1024;
    // The flood published about 90 MiB; what is kept is 4 MiB, plus request
    // bodies in flight and the allocator's slack.
    assert!(
        grew_mib < 48,
        "peak RSS grew {grew_mib} MiB over {base} KiB at start"
    );

    // The oldest topics' history is gone: a resume gets `gap`, then live.
    let (gap, events) = resume(&gw, &epoch, "t000", 1, 1).await?;
    assert!(gap && events.is_empty(), "t000: gap {gap}, {events:?}");
    let (gap, events) = resume(&gw, &epoch, "t010", 1, 1).await?;
    assert!(gap && events.is_empty(), "t010: gap {gap}, {events:?}");
    // The newest topic replays whole, without a gap.
    let last = format!("t{:03}", TOPICS - 1);
    let (gap, events) = resume(&gw, &epoch, &last, 1, PER_TOPIC - 1).await?;
    assert!(!gap, "{last} lost nothing");
    let ids: Vec<String> = events
        .iter()
        .filter_map(|e| test_support::cursor_position(e.id.as_deref()?, &last))
        .collect();
    let want: Vec<String> = (2..=PER_TOPIC).map(|i| i.to_string()).collect();
    assert_eq!(ids, want, "{last} replays after position 1");

    // The node still publishes and delivers.
    let (status, _) = publish(&gw.http_url(), None, &json!({"topic":"t000","data":1})).await?;
    assert_eq!(status, 200);
    let (gap, events) = resume(&gw, &epoch, "t000", 1, 1).await?;
    assert!(gap && events.len() == 1, "the new message is kept");
    Ok(())
}

#[tokio::test]
async fn history_bounds_apply_per_topic_prefix() -> anyhow::Result<()> {
    let dir = TempDir::new("sb-attack-memory")?;
    let config = "[history]\nmax_messages = 50\n\
                  [[history.prefixes]]\nprefix = \"scores/\"\nmax_messages = 3\n\
                  [[history.prefixes]]\nprefix = \"scores/live/\"\nmax_messages = 5\n";
    let gw = gateway_with_config(BIN, &dir, config, &[]).await?;
    let mut live = SseClient::connect(&gw.url("/v1/sse/pubsub?topic=news"), &[]).await?;
    for topic in ["news", "scores/1", "scores/live/1"] {
        let datas: Vec<Value> = (0..10).map(|i| json!(i)).collect();
        publish_many(&gw.http_url(), topic, &datas).await?;
    }
    let epoch = epoch_of(
        live.next_event(WAIT)
            .await?
            .id
            .as_deref()
            .unwrap_or_default(),
    );
    drop(live);
    for (topic, kept) in [("news", 9), ("scores/1", 3), ("scores/live/1", 5)] {
        let (gap, events) = resume(&gw, &epoch, topic, 1, 9).await?;
        assert_eq!(
            (gap, events.len()),
            (kept < 9, kept),
            "{topic}: the longest prefix's bound, else [history]'s"
        );
    }
    Ok(())
}

#[tokio::test]
async fn bad_history_settings_stop_serve() -> anyhow::Result<()> {
    let dir = TempDir::new("sb-attack-memory")?;
    for bad in [
        "[history]\nmax_total_bytes = 10",
        "[history]\nmax_messages = 0",
        "[[history.prefixes]]\nprefix = \"bad topic\"",
        "[[history.prefixes]]\nprefix = \"a/\"\nmax_age_ms = 999999999999",
    ] {
        let err = gateway_with_config(BIN, &dir, bad, &[]).await;
        assert!(err.is_err(), "{bad} started");
    }
    let env = [("SWITCHBOARD_HISTORY_MAX_TOTAL_BYTES", "5")];
    assert!(Gateway::start_with_env(BIN, &[], &env).await.is_err());
    // The same keys within their bounds start.
    let good = "[history]\nmax_total_bytes = 2097152\nmax_messages = 10\n\
                [[history.prefixes]]\nprefix = \"a/\"\nmax_age_ms = 1000\n";
    gateway_with_config(BIN, &dir, good, &[]).await?;
    let env = [("SWITCHBOARD_HISTORY_MAX_TOTAL_BYTES", "2097152")];
    Gateway::start_with_env(BIN, &[], &env).await?;
    Ok(())
}

#[tokio::test]
async fn the_nats_history_stream_gets_max_bytes() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let dir = TempDir::new("sb-attack-memory")?;
    let config = "[[history.prefixes]]\nprefix = \"scores/\"\nmax_messages = 5000\n";
    let path = test_support::write_config(&dir, config)?;
    let env = [("SWITCHBOARD_HISTORY_NATS_MAX_BYTES", "123456789")];
    let args = [
        "--broker",
        &nats.url(),
        "--config",
        path.to_str().expect("UTF-8 path"),
    ];
    let gw = Gateway::start_with_env(BIN, &args, &env).await?;
    gw.wait_ready(WAIT).await?;
    let jsz = get(&nats.monitor_url("/jsz?streams=true&config=true"))
        .await?
        .json()?;
    let streams: Vec<&Value> = jsz["account_details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(streams.len(), 1, "{jsz}");
    let config = &streams[0]["config"];
    assert_eq!(config["max_bytes"], 123456789, "{config}");
    assert_eq!(
        config["max_msgs_per_subject"], 5000,
        "the widest prefix: {config}"
    );
    Ok(())
}

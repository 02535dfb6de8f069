//! Attacks by a lambda's answers (issue 11, point 6), against the real
//! gateway and a real PHP lambda (tests/php/lambda_bounds.php): absurd
//! timer numbers are invalid actions and every other app's timers still
//! fire; a lambda that publishes to the topic it follows stops at the hop
//! limit, counted, while other streams of the node keep being served; a
//! `close` event's answer counts its invalid actions like any other.

use std::time::Duration;

use serde_json::{json, Value};
use test_support::{php_script, publish, Gateway, PhpServer, WsClient};
use test_support::{wait_app_metric, Metrics};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
/// Generous: PHP and the gateway share two busy cores.
const LONG: Duration = Duration::from_secs(30);

/// The gateway with apps `names`, each served by the bounds lambda.
async fn start(
    names: &[&str],
    extra_args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<(PhpServer, Gateway)> {
    let php = PhpServer::start(&php_script("lambda_bounds.php")).await?;
    let apps: Vec<String> = names.iter().map(|n| format!("{n}={}", php.url())).collect();
    let mut args: Vec<&str> = apps.iter().flat_map(|a| ["--app", a.as_str()]).collect();
    args.extend_from_slice(extra_args);
    let gw = Gateway::start_with_env(BIN, &args, env).await?;
    Ok((php, gw))
}

/// Opens `stream` of `app` with `params` on a new connection; fails unless `opened`.
async fn open(gw: &Gateway, stream: &str, app: &str, params: Value) -> anyhow::Result<WsClient> {
    let mut ws = WsClient::connect(&gw.ws_url("/v1/ws")).await?;
    let reply = ws.open(stream, app, params).await?;
    anyhow::ensure!(reply["type"] == "opened", "open {stream}: {reply}");
    Ok(ws)
}

/// The data of the next `event` frame named `event`.
async fn next_event(ws: &mut WsClient, event: &str) -> anyhow::Result<Value> {
    let f = ws
        .recv_until(|f| f["type"] == "event" && f["event"] == event, LONG)
        .await?;
    Ok(f["data"].clone())
}

async fn publish_id(gw: &Gateway, topic: &str, data: Value) -> anyhow::Result<String> {
    let (status, body) =
        publish(&gw.http_url(), None, &json!({"topic": topic, "data": data})).await?;
    anyhow::ensure!(status == 200, "publish {topic}: {status} {body}");
    Ok(body["id"].as_str().unwrap_or_default().to_owned())
}

/// Timer actions no bound admits, as raw JSON (numbers PHP could not
/// print): each is an invalid action, and none reaches a timer shard.
const ABSURD_TIMERS: [&str; 8] = [
    r#"{"type":"timer","name":"max","after_ms":18446744073709551615}"#,
    r#"{"type":"timer","name":"float","after_ms":1e20}"#,
    r#"{"type":"timer","name":"inf","every_ms":1e999}"#,
    // Three years: past the shard's DelayQueue, which used to panic on it.
    r#"{"type":"timer","name":"years","after_ms":94608000000}"#,
    r#"{"type":"timer","name":"day","every_ms":86400001}"#,
    r#"{"type":"timer","name":"zero","every_ms":0}"#,
    r#"{"type":"timer","name":"neg","after_ms":-1}"#,
    r#"{"type":"timer","name":"both","after_ms":1000,"every_ms":1000}"#,
];

#[tokio::test]
async fn absurd_timers_are_invalid_and_every_apps_timers_still_fire() -> anyhow::Result<()> {
    let (_php, gw) = start(&["evil", "good"], &[], &[]).await?;
    // The bad timers, then one fine one: the rest of the answer still applies.
    let mut extra = ABSURD_TIMERS.to_vec();
    extra.push(r#"{"type":"timer","name":"fine","after_ms":300}"#);
    let mut evil = open(&gw, "e", "evil", json!({"extra": extra.join(",")})).await?;

    // After that, another app's timers, one on every shard (round robin).
    let names: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
    let timers: Vec<String> = names
        .iter()
        .map(|n| format!(r#"{{"type":"timer","name":"{n}","after_ms":200}}"#))
        .collect();
    let mut good = open(&gw, "g", "good", json!({"extra": timers.join(",")})).await?;
    let mut fired = Vec::new();
    while fired.len() < names.len() {
        let tick = next_event(&mut good, "tick").await?;
        fired.push(tick["timer"].as_str().unwrap_or_default().to_owned());
    }
    fired.sort();
    assert_eq!(fired, names, "every timer of the other app fired");
    assert_eq!(next_event(&mut evil, "tick").await?["timer"], "fine");

    let n = ABSURD_TIMERS.len() as f64;
    wait_app_metric(&gw.http_url(), "invalid_actions", "evil", LONG, |v| v >= n).await?;
    let m = Metrics::fetch(&gw.http_url()).await?;
    assert_eq!(m.app("invalid_actions", "evil"), n);
    assert_eq!(m.app("invalid_actions", "good"), 0.0);
    assert_eq!(m.app("timers_set", "evil"), 1.0, "only the fine one");
    assert_eq!(m.app("timers_fired", "good"), names.len() as f64);
    assert!(m.has("switchboard_task_restarts{task=\"timer\"}"));
    assert_eq!(m.node("switchboard_task_restarts{task=\"timer\"}"), 0.0);
    Ok(())
}

/// A lambda that, for every message of the topic it follows, publishes the
/// next to that very topic: 1 message from outside, then `hops` from the
/// lambda, then the next publish is dropped and counted.
async fn publish_loop_stops(gw: &Gateway, hops: u64) -> anyhow::Result<()> {
    let topic = "loop/1";
    let mut looping = open(gw, "l", "loop", json!({"follow": topic, "to": topic})).await?;
    let mut calm = open(gw, "c", "loop", json!({"direct": "calm/1"})).await?;
    assert_eq!(publish_id(gw, topic, json!({"n": 0})).await?, "1");

    wait_app_metric(&gw.http_url(), "publish_hops_exceeded", "loop", LONG, |v| {
        v >= 1.0
    })
    .await?;
    let mut seen = Vec::new();
    for _ in 0..=hops {
        seen.push(next_event(&mut looping, "seen").await?["data"]["n"].clone());
    }
    let want: Vec<Value> = (0..=hops).map(|n| json!(n)).collect();
    assert_eq!(seen, want, "the outside message, then one per hop");
    let m = Metrics::fetch(&gw.http_url()).await?;
    assert_eq!(m.app("publishes", "loop"), hops as f64);
    assert_eq!(m.app("publish_hops_exceeded", "loop"), 1.0);
    assert!(m.app("invalid_actions", "loop") >= 1.0);

    // Nothing more was published: the topic's next id follows the hops.
    let marker = publish_id(gw, topic, json!({"marker": true})).await?;
    assert_eq!(
        marker,
        (hops + 2).to_string(),
        "the loop published {hops} times"
    );
    assert_eq!(
        next_event(&mut looping, "seen").await?["data"]["marker"],
        true
    );
    // Another stream of the node is still served.
    assert_eq!(publish_id(gw, "calm/1", json!({"calm": 1})).await?, "1");
    let f = calm
        .recv_until(|f| f["type"] == "event" && f["stream"] == "c", LONG)
        .await?;
    assert_eq!(f["data"], json!({"calm": 1}));
    Ok(())
}

#[tokio::test]
async fn a_lambda_publishing_to_the_topic_it_follows_stops_at_the_hop_limit() -> anyhow::Result<()>
{
    let (_php, gw) = start(&["loop"], &[], &[]).await?;
    publish_loop_stops(&gw, 8).await
}

#[tokio::test]
async fn the_hop_limit_is_configurable() -> anyhow::Result<()> {
    let (_php, gw) = start(&["loop"], &[], &[("SWITCHBOARD_MAX_PUBLISH_HOPS", "3")]).await?;
    publish_loop_stops(&gw, 3).await?;
    let (_php, gw) = start(&["loop"], &["--max-publish-hops", "2"], &[]).await?;
    publish_loop_stops(&gw, 2).await?;
    assert!(
        Gateway::start(BIN, &["--max-publish-hops", "0"])
            .await
            .is_err(),
        "0 is refused"
    );
    Ok(())
}

/// A `close` event's answer goes through the same action code as any
/// other answer's: a `publish` that breaks a rule (a bad topic, an empty
/// `dedup_key`) and a `buffer` to no sink are skipped and counted; an
/// action that does not apply once the stream is gone is ignored; the rest
/// applies.
#[tokio::test]
async fn invalid_actions_in_a_close_answer_are_counted() -> anyhow::Result<()> {
    let (_php, gw) = start(&["closer"], &[], &[]).await?;
    let mut watch = open(&gw, "w", "closer", json!({"direct": "closed/1"})).await?;
    let on_close = [
        r#"{"type":"publish","topic":"","data":1}"#,
        r#"{"type":"publish","topic":"closed/1","data":2,"dedup_key":""}"#,
        r#"{"type":"buffer","sink":"none","data":3}"#,
        r#"{"type":"push","data":4}"#,
        r#"{"type":"publish","topic":"closed/1","data":{"closed":true}}"#,
    ];
    let mut ws = open(&gw, "c", "closer", json!({"on_close": on_close.join(",")})).await?;
    ws.send_json(&json!({"type": "close", "stream": "c"}))
        .await?;
    let f = watch
        .recv_until(|f| f["type"] == "event" && f["stream"] == "w", LONG)
        .await?;
    assert_eq!(
        f["data"],
        json!({"closed": true}),
        "the valid publish applied"
    );

    // The invalid ones were counted before the publish went out.
    let m = Metrics::fetch(&gw.http_url()).await?;
    assert_eq!(m.app("invalid_actions", "closer"), 3.0);
    assert_eq!(m.app("publishes", "closer"), 1.0);
    assert_eq!(m.app("pushes", "closer"), 0.0, "push is ignored");
    Ok(())
}

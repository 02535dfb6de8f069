//! TLS (issue 11 point 9), with a CA each test makes: the listener serves
//! https:// and wss:// to a real TLS client (rustls), refuses plain HTTP
//! and closes a silent handshake; lambdas and sinks are reached over
//! https:// with the CA file (a wrong CA is a counted lambda failure); and
//! the shared brokers, a real nats-server and redis-server with TLS on,
//! carry messages between two nodes.

mod edge;

use std::sync::Arc;
use std::time::Duration;

use edge::{closed_within, read_status, BIN};
use serde_json::{json, Value};
use test_support::tls::{ServerCert, TestCa};
use test_support::{answer_each, gateway_with_config, Metrics, MockLambda, MockReply};
use test_support::{eventually, get, publish, within, Gateway, SseClient, TempDir, WsClient, WAIT};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A CA, trusted by the test's clients, and a certificate it signed.
fn ca_and_cert(name: &str) -> anyhow::Result<(TestCa, ServerCert)> {
    let ca = TestCa::new(name)?;
    let cert = ca.issue(name)?;
    ca.trust()?;
    Ok((ca, cert))
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// A gateway serving TLS with `cert`, and `args`.
async fn tls_gateway(cert: &ServerCert, args: &[&str]) -> anyhow::Result<Gateway> {
    tls_gateway_with_env(cert, args, &[]).await
}

async fn tls_gateway_with_env(
    cert: &ServerCert,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<Gateway> {
    let (c, k) = (path(&cert.cert), path(&cert.key));
    let mut all = vec!["--tls-cert", &c, "--tls-key", &k];
    all.extend_from_slice(args);
    Gateway::start_with_env(BIN, &all, env).await
}

/// A WebSocket on `gw` with a `pubsub` stream on `topic`, opened.
async fn subscriber(gw: &Gateway, topic: &str) -> anyhow::Result<WsClient> {
    let mut ws = WsClient::connect(&gw.ws_url("/v1/ws")).await?;
    let opened = ws.open("c", "pubsub", json!({"topic": topic})).await?;
    anyhow::ensure!(opened["type"] == "opened", "{opened}");
    Ok(ws)
}

async fn publish_ok(gw: &Gateway, topic: &str, data: Value) -> anyhow::Result<()> {
    let (status, body) =
        publish(&gw.http_url(), None, &json!({"topic": topic, "data": data})).await?;
    anyhow::ensure!(status == 200, "publish answered {status}: {body}");
    Ok(())
}

#[tokio::test]
async fn https_publish_wss_and_sse_work_with_a_real_tls_client() -> anyhow::Result<()> {
    let (_ca, cert) = ca_and_cert("listener")?;
    let gw = tls_gateway(&cert, &[]).await?;
    assert!(gw.http_url().starts_with("https://"), "{}", gw.http_url());
    assert_eq!(get(&gw.url("/healthz")).await?.status, 200);

    let mut ws = subscriber(&gw, "news").await?;
    let mut sse = SseClient::connect(&gw.url("/v1/sse/pubsub?topic=news"), &[]).await?;
    assert_eq!(sse.status(), 200);

    publish_ok(&gw, "news", json!({"n": 1})).await?;
    let event = ws.recv_json_skip_pings(WAIT).await?;
    assert_eq!(
        (event["type"].clone(), event["data"].clone()),
        (json!("event"), json!({"n": 1}))
    );
    let event = sse.next_event(WAIT).await?;
    assert_eq!(event.json()?, json!({"n": 1}));

    // Bigger than a TLS record (16 KiB), several in a row: rustls's buffer is flushed.
    let big = "x".repeat(40_000);
    for n in 2..6 {
        publish_ok(&gw, "news", json!({"n": n, "big": big})).await?;
    }
    for n in 2..6 {
        let event = ws.recv_json_skip_pings(WAIT).await?;
        assert_eq!(
            (
                event["data"]["n"].clone(),
                event["data"]["big"].as_str().map(str::len)
            ),
            (json!(n), Some(40_000))
        );
    }

    // The page's own origin is https://: it passes, its http:// twin does not.
    let own = format!("https://{}", gw.addr());
    let twin = format!("http://{}", gw.addr());
    let sse_own =
        SseClient::connect(&gw.url("/v1/sse/pubsub?topic=a"), &[("Origin", &own)]).await?;
    assert_eq!(sse_own.status(), 200);
    let sse_twin =
        SseClient::connect(&gw.url("/v1/sse/pubsub?topic=a"), &[("Origin", &twin)]).await?;
    assert_eq!(sse_twin.status(), 403);
    ws.close().await
}

#[tokio::test]
async fn plain_http_is_refused_and_a_silent_handshake_is_closed() -> anyhow::Result<()> {
    let (_ca, cert) = ca_and_cert("edge")?;
    // `/metrics` on its own listener, which stays plain HTTP.
    let metrics_env = [("SWITCHBOARD_METRICS_LISTEN", "127.0.0.1:0")];
    let gw = tls_gateway_with_env(&cert, &["--header-timeout-ms", "400"], &metrics_env).await?;
    let metrics_url = eventually(WAIT, "the metrics line on stdout", || {
        gw.stdout_lines()
            .iter()
            .find_map(|l| l.strip_prefix("switchboard metrics on ").map(str::to_owned))
    })
    .await?;
    assert!(metrics_url.starts_with("http://"), "{metrics_url}");

    let mut plain = TcpStream::connect(gw.addr()).await?;
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    assert_eq!(read_status(&mut plain).await?, Some(400));
    assert!(
        closed_within(&mut plain, WAIT).await,
        "plain HTTP left open"
    );

    let mut silent = TcpStream::connect(gw.addr()).await?;
    // A handshake record's first bytes, then nothing more.
    let mut stalled = TcpStream::connect(gw.addr()).await?;
    stalled.write_all(&[0x16, 0x03, 0x01]).await?;
    assert!(
        closed_within(&mut silent, WAIT).await,
        "silent client left open"
    );
    assert!(
        closed_within(&mut stalled, WAIT).await,
        "stalled handshake left open"
    );

    // The socket closes as the handshake future is dropped, a moment
    // before the count: wait for the counts rather than read them once.
    let refused = "switchboard_connections_refused{reason=\"tls_handshake\"}";
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let metrics = Metrics::parse(&get(&metrics_url).await?.text());
        if metrics.node("switchboard_header_timeouts") >= 2.0 && metrics.node(refused) >= 1.0 {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "two header timeouts and one refused handshake expected: {metrics:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        get(&gw.url("/healthz")).await?.status,
        200,
        "still serves TLS"
    );
    Ok(())
}

#[tokio::test]
async fn bad_tls_settings_stop_serve_without_showing_the_key() -> anyhow::Result<()> {
    let (ca, cert) = ca_and_cert("config")?;
    let other = ca.issue("other")?;
    let key_text = std::fs::read_to_string(&cert.key)?;
    let key_line = key_text.lines().nth(1).unwrap_or_default().to_owned();
    let (c, k, wrong_key) = (path(&cert.cert), path(&cert.key), path(&other.key));
    let cases: [&[&str]; 4] = [
        &["--tls-cert", &c],
        &["--tls-key", &k],
        // The key given as the certificate, and a key that is not the cert's.
        &["--tls-cert", &k, "--tls-key", &k],
        &["--tls-cert", &c, "--tls-key", &wrong_key],
    ];
    for args in cases {
        let out = tokio::process::Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            !stderr.contains(&key_line),
            "{args:?} printed the key: {stderr}"
        );
    }
    Ok(())
}

/// Answers `open` with accept, a push and a record for the sink `audit`.
fn secure_lambda() -> test_support::MockHandler {
    Arc::new(|request: &Value| {
        if request.is_array() {
            return MockReply::Json(json!({})); // a sink batch
        }
        MockReply::Json(answer_each(request, |e| match e["type"].as_str() {
            Some("open") => vec![
                json!({"type": "accept"}),
                json!({"type": "push", "data": {"over": "https"}}),
                json!({"type": "buffer", "sink": "audit", "data": {"x": 1}}),
            ],
            _ => vec![],
        }))
    })
}

fn lambda_config(mock: &MockLambda, ca: &TestCa) -> String {
    format!(
        "lambda_ca_file = \"{}\"\n\n[apps.secure]\nlambda = \"{}lambda\"\nretries = 0\n\n\
         [sinks.audit]\nkind = \"http\"\nurl = \"{}sink\"\nflush_interval_ms = 100\n",
        path(ca.cert_path()),
        mock.url(),
        mock.url()
    )
}

#[tokio::test]
async fn lambdas_and_sinks_over_https_with_the_ca_file() -> anyhow::Result<()> {
    let (ca, cert) = ca_and_cert("lambda")?;
    let mock = MockLambda::start_tls(secure_lambda(), &cert).await?;
    assert!(mock.url().starts_with("https://"));
    let dir = TempDir::new("switchboard-tls-lambda")?;
    let gw = gateway_with_config(BIN, &dir, &lambda_config(&mock, &ca), &[]).await?;

    let mut ws = WsClient::connect(&gw.ws_url("/v1/ws")).await?;
    let opened = ws.open("s", "secure", json!({})).await?;
    assert_eq!(opened["type"], "opened", "{opened}");
    let push = ws.recv_json_skip_pings(WAIT).await?;
    assert_eq!(push["data"], json!({"over": "https"}), "{push}");
    let batch = eventually(WAIT, "the sink batch over https", || {
        mock.requests().into_iter().find(|r| r.is_array())
    })
    .await?;
    assert_eq!(batch[0]["data"], json!({"x": 1}), "{batch}");
    ws.close().await
}

#[tokio::test]
async fn a_lambda_signed_by_another_ca_is_a_counted_failure() -> anyhow::Result<()> {
    let (_ca, cert) = ca_and_cert("lambda-real")?;
    let stranger = TestCa::new("lambda-stranger")?;
    let mock = MockLambda::start_tls(secure_lambda(), &cert).await?;
    let dir = TempDir::new("switchboard-tls-wrong-ca")?;
    let gw = gateway_with_config(BIN, &dir, &lambda_config(&mock, &stranger), &[]).await?;

    let mut ws = WsClient::connect(&gw.ws_url("/v1/ws")).await?;
    let reply = ws.open("s", "secure", json!({})).await?;
    assert_eq!(
        (reply["type"].clone(), reply["code"].clone()),
        (json!("rejected"), json!(502)),
        "{reply}"
    );
    let failures = Metrics::fetch(&gw.http_url())
        .await?
        .app("lambda_failures", "secure");
    assert!(failures >= 1.0, "lambda_failures {failures}");
    assert_eq!(mock.request_count(), 0, "no request passed the handshake");
    ws.close().await
}

/// Two nodes on `broker` (with the CA file): a message published on one
/// reaches a WebSocket subscriber on the other.
async fn message_crosses_nodes(broker: &str, ca: &TestCa) -> anyhow::Result<()> {
    let ca_file = path(ca.cert_path());
    let args = ["--broker", broker, "--broker-ca-file", &ca_file];
    let (a, b) = (
        Gateway::start(BIN, &args).await?,
        Gateway::start(BIN, &args).await?,
    );
    for gw in [&a, &b] {
        within(Duration::from_secs(30), "the node to be ready", async {
            loop {
                if get(&gw.url("/readyz")).await?.status == 200 {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await?;
    }
    let mut ws = subscriber(&a, "over/tls").await?;
    publish_ok(&b, "over/tls", json!({"k": 7})).await?;
    let event = ws.recv_json_skip_pings(Duration::from_secs(20)).await?;
    assert_eq!(event["data"], json!({"k": 7}), "{event}");
    ws.close().await
}

#[cfg(feature = "nats")]
#[tokio::test]
async fn nats_over_tls_carries_messages_between_nodes() -> anyhow::Result<()> {
    let (ca, cert) = ca_and_cert("nats")?;
    let nats = test_support::brokers::NatsServer::start_tls(&cert).await?;
    assert!(nats.url().starts_with("tls://"));
    message_crosses_nodes(&nats.url(), &ca).await
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_over_tls_carries_messages_between_nodes() -> anyhow::Result<()> {
    let (ca, cert) = ca_and_cert("redis")?;
    let redis = test_support::brokers::RedisServer::start_tls(&cert, &ca).await?;
    assert!(redis.url().starts_with("rediss://"));
    message_crosses_nodes(&redis.url(), &ca).await
}

#[tokio::test]
async fn publish_and_lambda_check_commands_speak_https_with_a_ca_file() -> anyhow::Result<()> {
    let (ca, cert) = ca_and_cert("cli")?;
    let gw = tls_gateway(&cert, &[]).await?;
    let mut ws = subscriber(&gw, "cli").await?;
    let ca_file = path(ca.cert_path());
    let run = |args: Vec<String>| async move {
        let out = tokio::process::Command::new(BIN)
            .args(&args)
            .output()
            .await?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        anyhow::Ok((out.status.code(), stderr))
    };
    let publish = |ca: Option<&str>| {
        let mut args = vec!["publish".to_owned(), "--url".to_owned(), gw.http_url()];
        if let Some(ca) = ca {
            args.extend(["--ca-file".to_owned(), ca.to_owned()]);
        }
        args.extend(["cli".to_owned(), r#"{"via":"cli"}"#.to_owned()]);
        args
    };
    // Without the CA file the system's roots do not know the test's CA.
    let (code, stderr) = run(publish(None)).await?;
    assert_ne!(code, Some(0), "published without trusting the CA: {stderr}");
    let (code, stderr) = run(publish(Some(&ca_file))).await?;
    assert_eq!(code, Some(0), "{stderr}");
    let event = ws.recv_json_skip_pings(WAIT).await?;
    assert_eq!(event["data"], json!({"via": "cli"}), "{event}");

    let mock = MockLambda::start_tls(secure_lambda(), &cert).await?;
    let check = vec![
        "lambda".to_owned(),
        "check".to_owned(),
        mock.url(),
        "--lambda-ca-file".to_owned(),
        ca_file.clone(),
    ];
    let (code, stderr) = run(check).await?;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(mock.request_count() > 0);
    ws.close().await
}

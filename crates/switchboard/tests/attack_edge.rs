//! Attacks on the HTTP edge (issue 11 point 1) against the real gateway
//! with short configured timeouts: slow heads, idle keep-alive
//! connections, trickled bodies, oversized heads, connection floods over
//! `max_connections` and `max_connections_per_ip`, and descriptor
//! exhaustion under a low `ulimit -n`. After each, an existing subscriber
//! still gets its messages and a new client is served.

mod edge;

use std::time::Duration;

use edge::{closed_within, connect_from, read_status, still_serves, subscriber, KeepAlive, BIN};
use test_support::{gateway_with_config, write_config, Metrics};
use test_support::{within, Gateway, TempDir, WAIT};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A gateway with the direct app `pubsub` and `[http]` set to `http`.
async fn gateway(http: &str) -> anyhow::Result<(Gateway, TempDir)> {
    let dir = TempDir::new("switchboard-attack-edge")?;
    let config = format!("[http]\n{http}\n\n[apps.pubsub]\nlambda = \"direct\"\n");
    let gateway = gateway_with_config(BIN, &dir, &config, &[]).await?;
    Ok((gateway, dir))
}

#[tokio::test]
async fn slow_heads_are_closed_at_header_timeout() -> anyhow::Result<()> {
    let (gw, _dir) = gateway("header_timeout_ms = 300").await?;
    let mut ws = subscriber(&gw, "calm").await?;
    let mut half_heads = Vec::new();
    for _ in 0..20 {
        let mut tcp = TcpStream::connect(gw.addr()).await?;
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await?;
        half_heads.push(tcp);
    }
    // A head trickled a byte at a time is cut off too: the timeout runs
    // from the accept, not from the last byte.
    let mut trickle = TcpStream::connect(gw.addr()).await?;
    within(WAIT, "the trickled head to be cut off", async {
        let head = b"GET /healthz HTTP/1.1\r\nX-Slow: ".iter();
        for b in head.chain(std::iter::repeat(&b'a')) {
            if trickle.write_all(&[*b]).await.is_err() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    })
    .await?;
    for (i, tcp) in half_heads.iter_mut().enumerate() {
        assert!(closed_within(tcp, WAIT).await, "half head {i} still open");
    }
    let timeouts = Metrics::fetch(&gw.http_url())
        .await?
        .node("switchboard_header_timeouts");
    assert!(timeouts >= 21.0, "header_timeouts {timeouts}");
    still_serves(&gw, None, &mut ws, "calm", 1).await
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() -> anyhow::Result<()> {
    let (gw, _dir) = gateway("header_timeout_ms = 60000\nidle_timeout_ms = 300").await?;
    let mut ws = subscriber(&gw, "calm").await?;
    let mut tcp = TcpStream::connect(gw.addr()).await?;
    for _ in 0..3 {
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await?;
        assert_eq!(read_status(&mut tcp).await?, Some(200));
        let mut body = [0u8; 8];
        within(WAIT, "the healthz body", async {
            use tokio::io::AsyncReadExt;
            let mut got = Vec::new();
            while !got.ends_with(b"0\r\n\r\n") {
                let n = tcp.read(&mut body).await?;
                anyhow::ensure!(n > 0, "closed inside a response");
                got.extend_from_slice(&body[..n]);
            }
            Ok(())
        })
        .await?;
    }
    assert!(
        closed_within(&mut tcp, WAIT).await,
        "an idle keep-alive connection stays open past idle_timeout"
    );
    still_serves(&gw, None, &mut ws, "calm", 1).await
}

#[tokio::test]
async fn keep_alive_waits_are_not_cut_by_the_header_timeout() -> anyhow::Result<()> {
    let (gw, _dir) = gateway("header_timeout_ms = 200\nidle_timeout_ms = 60000").await?;
    let mut keep = KeepAlive::open(gw.addr()).await?;
    assert_eq!(keep.request("GET", "/healthz", None).await?.0, 200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(keep.request("GET", "/healthz", None).await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn a_trickled_publish_body_is_cut_off() -> anyhow::Result<()> {
    let (gw, _dir) = gateway("body_timeout_ms = 300").await?;
    let mut ws = subscriber(&gw, "calm").await?;
    let tcp = TcpStream::connect(gw.addr()).await?;
    let (mut rx, mut tx) = tcp.into_split();
    let writer = tokio::spawn(async move {
        let head = "POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                    Content-Length: 100000\r\n\r\n{\"topic\":\"calm\",\"data\":\"";
        if tx.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for _ in 0..500 {
            if tx.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert_eq!(read_status(&mut rx).await?, Some(408));
    assert!(
        closed_within(&mut rx, WAIT).await,
        "the connection is closed after 408"
    );
    writer.abort();
    let m = Metrics::fetch(&gw.http_url()).await?;
    assert_eq!(m.node("switchboard_body_timeouts"), 1.0);
    still_serves(&gw, None, &mut ws, "calm", 1).await
}

#[tokio::test]
async fn an_oversized_head_gets_431() -> anyhow::Result<()> {
    let (gw, _dir) = gateway("").await?;
    let mut ws = subscriber(&gw, "calm").await?;
    let head = |filler: usize| {
        format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(filler)
        )
    };
    let mut big = TcpStream::connect(gw.addr()).await?;
    big.write_all(head(20 * 1024).as_bytes()).await?;
    assert_eq!(
        read_status(&mut big).await?,
        Some(431),
        "a 20 KiB head over the 16 KiB default"
    );
    let mut fits = TcpStream::connect(gw.addr()).await?;
    fits.write_all(head(12 * 1024).as_bytes()).await?;
    assert_eq!(
        read_status(&mut fits).await?,
        Some(200),
        "a 12 KiB head fits"
    );
    still_serves(&gw, None, &mut ws, "calm", 1).await?;

    let (small, _dir) = gateway("max_head_bytes = 4096").await?;
    let mut over = TcpStream::connect(small.addr()).await?;
    over.write_all(head(6 * 1024).as_bytes()).await?;
    assert_eq!(
        read_status(&mut over).await?,
        Some(431),
        "a 6 KiB head over max_head_bytes"
    );
    Ok(())
}

#[tokio::test]
async fn a_flood_over_max_connections_is_refused_and_harms_nobody() -> anyhow::Result<()> {
    let (gw, _dir) = gateway("max_connections = 20\nheader_timeout_ms = 60000").await?;
    let mut ws = subscriber(&gw, "calm").await?;
    let mut keep = KeepAlive::open(gw.addr()).await?;
    let before = keep
        .wait_metric("switchboard_tcp_connections", ">= 2.0", |v| v >= 2.0)
        .await? as usize;
    let mut flood = edge::flood("127.0.0.1", gw.addr(), 40).await?;
    let places = 20 - before;
    let refused = (40 - places) as f64;
    let got = keep
        .wait_metric(
            "switchboard_connections_refused{reason=\"max_connections\"}",
            ">= refused",
            |v| v >= refused,
        )
        .await?;
    assert_eq!(got, refused);
    // Accepted in order: the ones past the places left are closed at once.
    for (i, tcp) in flood.iter_mut().enumerate().skip(places) {
        assert!(
            closed_within(tcp, WAIT).await,
            "flood connection {i} over the cap is open"
        );
    }
    assert_eq!(
        keep.metrics().await?.node("switchboard_tcp_connections"),
        20.0
    );
    // Existing clients go on: a publish on the open connection reaches the subscriber.
    edge::publish_over(&mut keep, &mut ws, "calm", 1).await?;
    drop(flood);
    keep.wait_metric("switchboard_tcp_connections", "at most before", |v| {
        v <= before as f64
    })
    .await?;
    still_serves(&gw, None, &mut ws, "calm", 2).await
}

#[tokio::test]
async fn a_flood_from_one_address_is_capped_per_address() -> anyhow::Result<()> {
    let (gw, _dir) = gateway("max_connections_per_ip = 5\nheader_timeout_ms = 60000").await?;
    let mut ws = subscriber(&gw, "calm").await?;
    let mut keep = KeepAlive::open(gw.addr()).await?;
    let mut flood = edge::flood("127.0.0.2", gw.addr(), 10).await?;
    let sample = "switchboard_connections_refused{reason=\"max_connections_per_ip\"}";
    let refused = keep.wait_metric(sample, ">= 5", |v| v >= 5.0).await?;
    assert_eq!(refused, 5.0);
    for (i, tcp) in flood.iter_mut().enumerate().skip(5) {
        assert!(
            closed_within(tcp, WAIT).await,
            "connection {i} over the address cap is open"
        );
    }
    // Another address is not affected.
    let mut other = connect_from("127.0.0.3", gw.addr()).await?;
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    assert_eq!(read_status(&mut other).await?, Some(200));
    still_serves(&gw, None, &mut ws, "calm", 1).await
}

/// The gateway started by `sh` under `ulimit -n 64` (soft and hard), with
/// `[http]` `http`.
async fn low_nofile_gateway(dir: &TempDir, http: &str) -> anyhow::Result<Gateway> {
    use std::os::unix::fs::PermissionsExt;
    let wrapper = dir.path().join("low-nofile.sh");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nulimit -n 64 || exit 3\nexec '{BIN}' \"$@\"\n"),
    )?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    let config = write_config(
        dir,
        &format!("[http]\n{http}\n\n[apps.pubsub]\nlambda = \"direct\"\n"),
    )?;
    let wrapper = wrapper.to_str().unwrap_or_default().to_owned();
    let config = config.to_str().unwrap_or_default().to_owned();
    Gateway::start(&wrapper, &["--config", &config]).await
}

#[tokio::test]
async fn running_out_of_descriptors_backs_off_and_recovers() -> anyhow::Result<()> {
    let dir = TempDir::new("switchboard-attack-nofile")?;
    // A cap the descriptors cannot reach: accept meets EMFILE.
    let gw =
        low_nofile_gateway(&dir, "max_connections = 100000\nheader_timeout_ms = 60000").await?;
    let mut ws = subscriber(&gw, "calm").await?;
    let mut keep = KeepAlive::open(gw.addr()).await?;
    let flood = edge::flood("127.0.0.1", gw.addr(), 80).await?;
    keep.wait_metric("switchboard_accept_errors", ">= 1.0", |v| v >= 1.0)
        .await?;
    // Out of descriptors, existing connections still work.
    edge::publish_over(&mut keep, &mut ws, "calm", 1).await?;
    // A second in EMFILE: a busy loop would fail thousands of accepts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let errors = keep.metrics().await?.node("switchboard_accept_errors");
    assert!(errors <= 40.0, "{errors} failed accepts: no back-off");
    drop(flood);
    still_serves(&gw, None, &mut ws, "calm", 2).await
}

#[tokio::test]
async fn the_default_cap_keeps_a_flood_off_the_descriptor_limit() -> anyhow::Result<()> {
    let dir = TempDir::new("switchboard-attack-nofile-default")?;
    let gw = low_nofile_gateway(&dir, "header_timeout_ms = 60000").await?;
    let mut ws = subscriber(&gw, "calm").await?;
    let mut keep = KeepAlive::open(gw.addr()).await?;
    let flood = edge::flood("127.0.0.1", gw.addr(), 80).await?;
    let sample = "switchboard_connections_refused{reason=\"max_connections\"}";
    keep.wait_metric(sample, ">= 40.0", |v| v >= 40.0).await?;
    let m = keep.metrics().await?;
    assert_eq!(
        m.node("switchboard_accept_errors"),
        0.0,
        "the cap came before EMFILE"
    );
    // The flood's accepted connections close as the gateway reads their
    // EOF; until then a new connection would meet the cap.
    drop(flood);
    keep.wait_metric("switchboard_tcp_connections", "at most 2", |v| v <= 2.0)
        .await?;
    still_serves(&gw, None, &mut ws, "calm", 1).await
}

#[tokio::test]
async fn streams_outlive_the_header_and_idle_timeouts() -> anyhow::Result<()> {
    let (gw, _dir) = gateway("header_timeout_ms = 200\nidle_timeout_ms = 200").await?;
    let mut ws = subscriber(&gw, "calm").await?;
    let mut sse =
        test_support::SseClient::connect(&gw.url("/v1/sse/pubsub?topic=calm"), &[]).await?;
    assert_eq!(sse.status(), 200);
    // Several timeouts long: the upgraded WebSocket and the SSE response are
    // past their heads, so neither timer applies.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    still_serves(&gw, None, &mut ws, "calm", 1).await?;
    let event = sse.next_event(WAIT).await?;
    assert_eq!(event.json()?["n"], 1, "{event:?}");
    Ok(())
}

//! WebSocket conformance: the Autobahn TestSuite's cases (through kosoku,
//! `scripts/autobahn.sh`) against the gateway's test-only echo endpoint, which
//! reads through the same framing as `/v1/ws`; that endpoint is off without
//! `--ws-echo`; and `/v1/ws` itself fails bad UTF-8 before the frame ends.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use test_support::{client_frame, RawWs};
use test_support::{get, repo_path, Gateway, TempDir, WsClient, WsFrame, WAIT};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
/// The script bounds each of its two runs to 300 s; a few seconds is usual.
const SUITE_LIMIT: Duration = Duration::from_secs(900);

#[tokio::test]
async fn every_autobahn_case_passes_or_is_over_the_message_limit() -> anyhow::Result<()> {
    let out = TempDir::new("autobahn")?;
    let run = tokio::time::timeout(
        SUITE_LIMIT,
        Command::new("bash")
            .arg(repo_path("scripts/autobahn.sh"))
            .env("SWITCHBOARD_BIN", BIN)
            .env("AUTOBAHN_OUT", out.path())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("scripts/autobahn.sh still running")??;
    let stdout = String::from_utf8_lossy(&run.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "Autobahn cases failed (see above)");
    let summary = std::fs::read_to_string(out.path().join("summary.md"))?;
    // The script fails on any unexpected case; this checks it ran them all.
    for run in [
        "default-limits: 301 cases, all as expected",
        "big-messages: 54 cases, all as expected",
    ] {
        assert!(summary.contains(run), "summary lacks {run:?}:\n{summary}");
    }
    Ok(())
}

#[tokio::test]
async fn the_echo_endpoint_is_served_only_with_the_test_flag() -> anyhow::Result<()> {
    let plain = Gateway::start(BIN, &[]).await?;
    assert_eq!(get(&plain.url("/v1/_echo")).await?.status, 404);
    assert!(WsClient::connect(&plain.ws_url("/v1/_echo")).await.is_err());

    let echo = Gateway::start(BIN, &["--ws-echo"]).await?;
    // Not an upgrade: the handshake's answer, as on /v1/ws.
    assert_eq!(get(&echo.url("/v1/_echo")).await?.status, 400);
    let mut ws = WsClient::connect(&echo.ws_url("/v1/_echo")).await?;
    ws.send_text("héllo").await?;
    assert_eq!(ws.recv(WAIT).await?, WsFrame::Text("héllo".into()));
    ws.send_binary(vec![0, 255]).await?;
    assert_eq!(ws.recv(WAIT).await?, WsFrame::Binary(vec![0, 255]));
    Ok(())
}

#[tokio::test]
async fn bad_utf8_closes_v1_ws_with_1007_before_the_frame_ends() -> anyhow::Result<()> {
    let gateway = Gateway::start(BIN, &[]).await?;
    let mut raw = RawWs::connect(gateway.addr(), "/v1/ws", None).await?;
    // A 21-byte text frame of which only the first 13 bytes are sent: "κόσμε"
    // then 0xF4 0x90, which no later byte can make UTF-8 (past U+10FFFF).
    let payload = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80edited";
    let frame = client_frame(0x1, payload);
    let header = frame.len() - payload.len();
    raw.send_raw(&frame[..header + 13]).await?;
    assert_eq!(raw.read_until_closed(WAIT).await?, Some(1007));
    Ok(())
}

//! The Python lambda helper (`sdk/python`): its unittest suite, `switchboard
//! lambda check` against its example lambda, and the example through the real
//! gateway over WebSocket.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use test_support::repo_path;
use test_support::{Gateway, WsClient};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
/// A lambda may be retried before an open is answered: allow for it.
const LAMBDA_WAIT: Duration = Duration::from_secs(30);
const PREFIX: &str = "switchboard lambda listening on ";

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// The example lambda (`examples/chat_room.py --port 0`), killed when dropped.
struct PyLambda {
    _child: Child,
    url: String,
}

impl PyLambda {
    async fn start() -> anyhow::Result<Self> {
        let mut child = Command::new(python())
            .arg("-u")
            .arg(repo_path("sdk/python/examples/chat_room.py"))
            .args(["--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawning python3 (scripts/test-sdk.sh installs what the SDK tests need)")?;
        let mut stdout = BufReader::new(child.stdout.take().context("python stdout")?);
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(20), stdout.read_line(&mut line))
            .await
            .context("the Python lambda printed no URL within 20 s")??;
        let url = line
            .trim()
            .strip_prefix(PREFIX)
            .with_context(|| format!("unexpected first line from the Python lambda: {line:?}"))?
            .to_owned();
        Ok(Self { _child: child, url })
    }
}

#[tokio::test]
async fn python_helper_unittests_pass() -> anyhow::Result<()> {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new(python())
            .args(["-m", "unittest", "discover", "-v", "-s"])
            .arg(repo_path("sdk/python/tests"))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("python unittest still running after 120 s")??;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "Python helper tests failed:\n{text}");
    assert!(text.contains("\nOK"), "{text}");
    Ok(())
}

#[tokio::test]
async fn lambda_check_accepts_the_python_example() -> anyhow::Result<()> {
    let lambda = PyLambda::start().await?;
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(BIN)
            .args(["lambda", "check", &lambda.url])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("lambda check still running after 60 s")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("ok: every answer is valid"), "{stdout}");
    Ok(())
}

async fn chat_event(ws: &mut WsClient, stream: &str, event: &str) -> anyhow::Result<Value> {
    ws.recv_until(
        |v| v["type"] == "event" && v["stream"] == stream && v["event"] == event,
        LAMBDA_WAIT,
    )
    .await
}

#[tokio::test]
async fn the_python_example_through_the_gateway() -> anyhow::Result<()> {
    let lambda = PyLambda::start().await?;
    let app = format!("chat={}", lambda.url);
    let gateway = Gateway::start(BIN, &["--app", &app]).await?;
    let mut ann = WsClient::connect(&gateway.ws_url("/v1/ws")).await?;
    let mut bob = WsClient::connect(&gateway.ws_url("/v1/ws")).await?;

    let bad = ann
        .open("x", "chat", json!({"room": "Not A Room", "nick": "ann"}))
        .await?;
    assert_eq!(
        (bad["type"].as_str(), bad["code"].as_u64()),
        (Some("rejected"), Some(400)),
        "{bad}"
    );

    for (ws, nick) in [(&mut ann, "ann"), (&mut bob, "bob")] {
        let reply = ws
            .open("c", "chat", json!({"room": "lobby", "nick": nick}))
            .await?;
        assert_eq!(reply["type"], "opened", "{reply}");
        let welcome = chat_event(ws, "c", "welcome").await?;
        assert_eq!(welcome["data"]["nick"], nick, "{welcome}");
    }

    ann.send_json(&json!({"type": "send", "stream": "c", "data": {"text": "a scam, no spam"}}))
        .await?;
    let mine = chat_event(&mut ann, "c", "chat").await?;
    assert_eq!(mine["data"]["text"], "a ****, no ****", "{mine}");
    assert_eq!(mine["data"]["mine"], true, "{mine}");
    let theirs = chat_event(&mut bob, "c", "chat").await?;
    assert_eq!(theirs["data"]["from"], "ann", "{theirs}");
    assert_eq!(theirs["data"]["mine"], false, "{theirs}");
    assert!(theirs["id"].is_string(), "a cursor on the push: {theirs}");

    // 3 per 5 s per stream: the 4th is refused.
    for i in 0..3 {
        ann.send_json(&json!({"type": "send", "stream": "c", "data": {"text": format!("m{i}")}}))
            .await?;
    }
    let limited = chat_event(&mut ann, "c", "rate_limited").await?;
    assert!(
        limited["data"]["retry_after_ms"].as_u64().is_some(),
        "{limited}"
    );
    Ok(())
}

//! The PHP SDK (`sdk/php`) and the live-comments example under real PHP:
//! the SDK's own test suite, `switchboard lambda check` against the example
//! served by `php -S` (exit 0) and against broken lambdas (exit 1), and the
//! example end to end through the real gateway over WebSocket.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use test_support::repo_path;
use test_support::{Gateway, PhpServer, TempDir, WsClient, WAIT};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
/// A lambda may be retried before an open is answered: allow for it.
const LAMBDA_WAIT: Duration = Duration::from_secs(30);

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs a command to completion (bounded), output captured and echoed to the
/// test's stderr (shown when the test fails).
async fn run(program: &str, args: &[&str], limit: Duration) -> anyhow::Result<Output> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "running {program}: {e} (scripts/test-sdk.sh installs what the SDK tests need)"
            )
        })?;
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| anyhow::anyhow!("{program} {args:?} still running after {limit:?}"))??;
    let out = Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "$ {program} {}\n{}{}",
        args.join(" "),
        out.stdout,
        out.stderr
    );
    Ok(out)
}

async fn lambda_check(url: &str) -> anyhow::Result<Output> {
    run(BIN, &["lambda", "check", url], Duration::from_secs(60)).await
}

/// The example's lambda under `php -S`, its data in a temp dir.
async fn example_lambda() -> anyhow::Result<(PhpServer, TempDir)> {
    let data = TempDir::new("switchboard-sdk-php")?;
    let php = PhpServer::start_with_env(
        &repo_path("examples/live-comments/lambda/index.php"),
        &[(
            "LIVE_COMMENTS_DATA",
            data.path().to_str().expect("UTF-8 temp path"),
        )],
    )
    .await?;
    Ok((php, data))
}

#[tokio::test]
async fn php_sdk_test_suite_passes_under_real_php() -> anyhow::Result<()> {
    let script = repo_path("sdk/php/tests/run.php");
    let out = run(
        "php",
        &[script.to_str().expect("UTF-8 path")],
        Duration::from_secs(120),
    )
    .await?;
    assert_eq!(out.code, Some(0), "PHP SDK tests failed:\n{}", out.stdout);
    assert!(out.stdout.contains(" 0 failed"), "{}", out.stdout);
    Ok(())
}

#[tokio::test]
async fn lambda_check_accepts_the_example_lambda() -> anyhow::Result<()> {
    let (php, _data) = example_lambda().await?;
    let out = lambda_check(&format!("{}index.php", php.url())).await?;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("ok: every answer is valid"),
        "{}",
        out.stdout
    );
    Ok(())
}

#[tokio::test]
async fn lambda_check_fails_on_broken_lambdas() -> anyhow::Result<()> {
    let php = PhpServer::start(&repo_path("sdk/php/tests/fixtures/broken.php")).await?;
    for (mode, diagnostic) in [
        ("count", "results"),
        ("action", "close code 1000"),
        ("status", "500"),
        ("garbage", "FAIL"),
    ] {
        let out = lambda_check(&format!("{}broken.php?mode={mode}", php.url())).await?;
        assert_eq!(
            out.code,
            Some(1),
            "mode {mode}: lambda check should fail:\n{}",
            out.stdout
        );
        assert!(
            out.stdout.contains("FAIL") && out.stdout.contains(diagnostic),
            "mode {mode}: expected a FAIL line mentioning {diagnostic:?}:\n{}",
            out.stdout
        );
    }
    Ok(())
}

/// The next event frame of `stream` named `event`.
async fn next_event(ws: &mut WsClient, stream: &str, event: &str) -> anyhow::Result<Value> {
    ws.recv_until(
        |v| v["type"] == "event" && v["stream"] == stream && v["event"] == event,
        LAMBDA_WAIT,
    )
    .await
}

#[tokio::test]
async fn the_example_lambda_through_the_gateway() -> anyhow::Result<()> {
    let (php, _data) = example_lambda().await?;
    let app = format!("live_comments={}index.php", php.url());
    let gateway = Gateway::start(BIN, &["--app", &app]).await?;
    let mut ws = WsClient::connect(&gateway.ws_url("/v1/ws")).await?;

    // Validation of the video id and the user.
    for (stream, params, code) in [
        ("bad1", json!({"video": "abc"}), 400),
        ("bad2", json!({"video": "999"}), 404),
        ("bad3", json!({"video": "1234", "user": "<script>"}), 400),
    ] {
        let reply = ws.open(stream, "live_comments", params).await?;
        assert_eq!(reply["type"], "rejected", "{reply}");
        assert_eq!(reply["code"], code, "{reply}");
    }

    let reply = ws
        .open(
            "fr",
            "live_comments",
            json!({"video": "1234", "user": "ann", "lang": "fr"}),
        )
        .await?;
    assert_eq!(reply["type"], "opened", "{reply}");
    let hello = next_event(&mut ws, "fr", "hello").await?;
    assert_eq!(hello["data"]["lang"], "fr", "{hello}");
    assert_eq!(hello["data"]["user"], "ann", "{hello}");
    let viewers = ws
        .recv_until(
            |v| v["type"] == "event" && v["data"]["kind"] == "viewers",
            WAIT,
        )
        .await?;
    assert_eq!(viewers["topic"], "viewers/1234", "{viewers}");
    assert_eq!(viewers["data"]["count"], 1, "{viewers}");
    assert!(viewers["id"].is_string(), "direct events carry a cursor");

    // A comment goes out on the topic and comes back transformed.
    ws.send_json(&json!({"type": "send", "stream": "fr",
        "data": {"text": "Hello <i>world</i> & thanks", "cid": "c1"}}))
        .await?;
    let comment = next_event(&mut ws, "fr", "comment").await?;
    assert_eq!(
        comment["data"]["html"], "Bonjour &lt;i&gt;monde&lt;/i&gt; &amp; merci",
        "{comment}"
    );
    assert_eq!(comment["data"]["id"], "c1", "{comment}");
    assert!(
        comment["id"].is_string(),
        "a push answering a message carries the cursor: {comment}"
    );

    // The publish path's rate limit: 5 per 10 s; the 6th is refused.
    for i in 2..=6 {
        ws.send_json(&json!({"type": "send", "stream": "fr",
            "data": {"text": format!("n{i}"), "cid": format!("c{i}")}}))
            .await?;
    }
    let limited = next_event(&mut ws, "fr", "rate_limited").await?;
    assert_eq!(limited["data"]["limit"], 5, "{limited}");

    // Switching language applies to the next comments.
    ws.send_json(&json!({"type": "send", "stream": "fr", "data": {"lang": "es"}}))
        .await?;
    next_event(&mut ws, "fr", "lang").await?;
    Ok(())
}

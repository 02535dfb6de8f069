//! `serve --dev` prints each event -> actions exchange with a real PHP lambda.

use std::time::Duration;

use serde_json::json;
use test_support::{php_script, Gateway, PhpServer, WsClient};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

#[tokio::test]
async fn dev_mode_prints_events_and_actions() -> anyhow::Result<()> {
    let php = PhpServer::start(&php_script("live_comments.php")).await?;
    let app = format!("live_comments={}", php.url());
    let gw = Gateway::start(BIN, &["--app", &app, "--dev"]).await?;
    let mut ws = WsClient::connect(&gw.ws_url("/v1/ws")).await?;
    ws.send_json(
        &json!({"type":"open","stream":"c1","app":"live_comments","params":{"video":"1234"}}),
    )
    .await?;
    let opened = ws.recv_json(Duration::from_secs(10)).await?;
    assert_eq!(opened["type"], "opened");
    ws.send_json(
        &json!({"type":"open","stream":"c2","app":"live_comments","params":{"video":"999"}}),
    )
    .await?;
    let rejected = ws.recv_json(Duration::from_secs(10)).await?;
    assert_eq!(rejected["type"], "rejected");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = gw.stdout_lines();
        let open_line = out
            .iter()
            .position(|l| l.contains("[live_comments] open stream=") && l.contains("\"1234\""));
        let reject = out
            .iter()
            .any(|l| l.trim_start().starts_with("-> reject 404"));
        if let Some(i) = open_line {
            if reject {
                assert!(
                    out[i + 1..].iter().any(|l| l.trim() == "-> accept"),
                    "{out:?}"
                );
                assert!(
                    out.iter()
                        .any(|l| l.contains("-> subscribe live_video_reaction/1234 (direct)")),
                    "{out:?}"
                );
                return Ok(());
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dev output missing: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

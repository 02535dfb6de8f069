//! How a missing or broken lambda shows to clients: the open is rejected
//! with 502 or 403.

use super::*;

/// A gateway with app `app` served by `broken.php` in `mode`.
async fn broken_lambda(mode: &str) -> anyhow::Result<(Gateway, PhpServer)> {
    let php =
        PhpServer::start_with_env(&php_script("broken.php"), &[("BROKEN_MODE", mode)]).await?;
    let gateway = Gateway::start(BIN, &["--app", &format!("app={}", php.url())]).await?;
    Ok((gateway, php))
}

/// Checks that an open on `app` is rejected with `code` over WS and SSE.
async fn assert_open_rejected(gateway: &Gateway, code: u16) -> anyhow::Result<()> {
    let mut ws = ws(gateway).await?;
    ws.send_json(&json!({"type": "open", "stream": "c1", "app": "app", "params": {}}))
        .await?;
    let reply = ws
        .recv_until(
            |v| v["stream"] == "c1" && (v["type"] == "opened" || v["type"] == "rejected"),
            LAMBDA_WAIT,
        )
        .await?;
    assert_eq!(reply["type"], "rejected", "{reply}");
    assert_eq!(reply["code"], code, "{reply}");
    expect_pong(&mut ws).await?;

    let mut sse = SseClient::connect_within(&gateway.url("/v1/sse/app"), &[], LAMBDA_WAIT).await?;
    assert_eq!(sse.status(), code);
    let body = sse.body_json(WAIT).await?;
    assert_eq!(body["error"]["status"], code, "{body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    Ok(())
}

#[tokio::test]
async fn an_open_is_rejected_with_502_when_the_lambda_is_down() -> anyhow::Result<()> {
    // Nothing listens on this port.
    let url = format!("http://127.0.0.1:{}/", free_port());
    let gateway = Gateway::start(BIN, &["--app", &format!("app={url}")]).await?;
    assert_open_rejected(&gateway, 502).await
}

#[tokio::test]
async fn an_open_is_rejected_with_502_when_the_lambda_answers_500() -> anyhow::Result<()> {
    let (gateway, _php) = broken_lambda("status_500").await?;
    assert_open_rejected(&gateway, 502).await
}

#[tokio::test]
async fn an_open_is_rejected_with_502_when_the_lambda_answers_garbage() -> anyhow::Result<()> {
    let (gateway, _php) = broken_lambda("garbage").await?;
    assert_open_rejected(&gateway, 502).await
}

#[tokio::test]
async fn an_open_is_rejected_with_502_on_a_wrong_result_count() -> anyhow::Result<()> {
    let (gateway, _php) = broken_lambda("wrong_count").await?;
    assert_open_rejected(&gateway, 502).await?;
    let (gateway, _php) = broken_lambda("no_results").await?;
    assert_open_rejected(&gateway, 502).await
}

#[tokio::test]
async fn an_open_without_accept_is_rejected_with_403() -> anyhow::Result<()> {
    let (gateway, _php) = broken_lambda("no_accept").await?;
    assert_open_rejected(&gateway, 403).await
}

#[tokio::test]
async fn a_reject_without_code_defaults_to_403() -> anyhow::Result<()> {
    let (gateway, _php) = broken_lambda("reject").await?;
    assert_open_rejected(&gateway, 403).await?;
    let mut sse = SseClient::connect(&gateway.url("/v1/sse/app"), &[]).await?;
    let body = sse.body_json(WAIT).await?;
    assert_eq!(body["error"]["code"], "rejected", "{body}");
    Ok(())
}

#[tokio::test]
async fn a_working_lambda_control_opens() -> anyhow::Result<()> {
    let (gateway, _php) = broken_lambda("ok").await?;
    let mut ws = ws(&gateway).await?;
    let reply = ws.open("c1", "app", json!({})).await?;
    assert_eq!(reply["type"], "opened", "{reply}");
    let sse = SseClient::connect(&gateway.url("/v1/sse/app"), &[]).await?;
    assert_eq!(sse.status(), 200);
    Ok(())
}

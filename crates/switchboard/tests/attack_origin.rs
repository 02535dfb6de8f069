//! Cross-site WebSocket hijacking and cross-site publish/admin (issue 11
//! points 2 and 3): a request whose `Origin` is neither the gateway's own
//! nor allowed by `allowed_origins` gets 403 (`forbidden_origin`) on
//! `/v1/ws`, SSE, publish and admin, key or no key; same-origin, allowed
//! and `Origin`-less requests pass; `origin` reaches the lambda by default.

mod edge;

use edge::{peer_event, read_status, still_serves, subscriber, ws_handshake, EdgeGateway};
use serde_json::{json, Value};
use test_support::{http_request, SseClient};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const EVIL: &str = "https://evil.example";

/// [`EdgeGateway`] with keys and two allowed origin patterns.
struct Setup {
    edge: EdgeGateway,
}

impl Setup {
    async fn start() -> anyhow::Result<Self> {
        let config = "publish_key = \"pk\"\nadmin_key = \"ak\"\n\n[http]\n\
                      allowed_origins = [\"https://app.example.com\", \"https://*.example.org\"]";
        Ok(Self {
            edge: EdgeGateway::start(config).await?,
        })
    }

    /// `http://127.0.0.1:PORT`: the origin of a page the gateway served.
    fn own(&self) -> String {
        self.edge.gateway.http_url()
    }

    async fn ws_status(&self, origin: Option<&str>) -> anyhow::Result<Option<u16>> {
        let mut tcp = TcpStream::connect(self.edge.gateway.addr()).await?;
        let headers: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
        ws_handshake(&mut tcp, b"", "/v1/ws", &headers).await
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        origin: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let auth = key.map(|k| format!("Bearer {k}"));
        let mut headers = vec![("Content-Type", "application/json")];
        headers.extend(auth.as_deref().map(|a| ("Authorization", a)));
        headers.extend(origin.map(|o| ("Origin", o)));
        let body = body.map(Value::to_string);
        let url = self.edge.gateway.url(path);
        let resp = http_request(method, &url, &headers, body.as_deref().map(str::as_bytes)).await?;
        Ok((resp.status, resp.json().unwrap_or_default()))
    }
}

/// Origins that must be refused, with what makes each foreign.
fn foreign(own: &str) -> Vec<String> {
    let port: u16 = own
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(1);
    vec![
        EVIL.to_owned(),
        "null".to_owned(),
        format!("http://127.0.0.1:{}", port.wrapping_add(1)),
        format!("https://127.0.0.1:{port}"),
        "http://app.example.com".to_owned(),
        "https://example.org".to_owned(),
        "https://evil-example.org".to_owned(),
    ]
}

/// Origins that must pass: the gateway's own, and the allowed patterns.
fn welcome(own: &str) -> Vec<String> {
    vec![
        own.to_owned(),
        "https://app.example.com".to_owned(),
        "https://eu.example.org".to_owned(),
    ]
}

#[tokio::test]
async fn websocket_upgrades_from_foreign_origins_are_refused() -> anyhow::Result<()> {
    let s = Setup::start().await?;
    let mut ws = subscriber(&s.edge.gateway, "calm").await?;
    for origin in foreign(&s.own()) {
        assert_eq!(s.ws_status(Some(&origin)).await?, Some(403), "{origin}");
    }
    for origin in welcome(&s.own()) {
        assert_eq!(s.ws_status(Some(&origin)).await?, Some(101), "{origin}");
    }
    assert_eq!(
        s.ws_status(None).await?,
        Some(101),
        "no Origin: not a browser"
    );
    still_serves(&s.edge.gateway, Some("pk"), &mut ws, "calm", 1).await
}

#[tokio::test]
async fn sse_from_foreign_origins_is_refused() -> anyhow::Result<()> {
    let s = Setup::start().await?;
    let mut ws = subscriber(&s.edge.gateway, "calm").await?;
    let url = s.edge.gateway.url("/v1/sse/pubsub?topic=calm");
    for origin in foreign(&s.own()) {
        let sse = SseClient::connect(&url, &[("Origin", &origin)]).await?;
        assert_eq!(sse.status(), 403, "{origin}");
    }
    for origin in welcome(&s.own()) {
        let sse = SseClient::connect(&url, &[("Origin", &origin)]).await?;
        assert_eq!(sse.status(), 200, "{origin}");
    }
    assert_eq!(SseClient::connect(&url, &[]).await?.status(), 200);
    still_serves(&s.edge.gateway, Some("pk"), &mut ws, "calm", 1).await
}

#[tokio::test]
async fn publish_and_admin_from_foreign_origins_are_refused_key_or_no_key() -> anyhow::Result<()> {
    let s = Setup::start().await?;
    let mut ws = subscriber(&s.edge.gateway, "bystander").await?;
    let msg = json!({"topic": "calm", "data": {"n": 1}});
    for origin in foreign(&s.own()) {
        for key in [Some("pk"), None] {
            let (status, body) = s
                .request("POST", "/v1/publish", key, Some(&origin), Some(&msg))
                .await?;
            assert_eq!(status, 403, "{origin} {key:?}: {body}");
            assert_eq!(body["error"]["code"], "forbidden_origin", "{body}");
        }
        let (status, body) = s
            .request("GET", "/v1/admin/apps", Some("ak"), Some(&origin), None)
            .await?;
        assert_eq!(status, 403, "{origin}: {body}");
        assert_eq!(body["error"]["code"], "forbidden_origin", "{body}");
    }
    let mut origins: Vec<Option<String>> = welcome(&s.own()).into_iter().map(Some).collect();
    origins.push(None);
    for origin in &origins {
        let o = origin.as_deref();
        let (status, body) = s
            .request("POST", "/v1/publish", Some("pk"), o, Some(&msg))
            .await?;
        assert_eq!(status, 200, "{o:?}: {body}");
        let (status, body) = s
            .request("GET", "/v1/admin/apps", Some("ak"), o, None)
            .await?;
        assert_eq!(status, 200, "{o:?}: {body}");
    }
    still_serves(&s.edge.gateway, Some("pk"), &mut ws, "bystander", 1).await
}

/// A request as a browser on `host` sends it: `Host` and `Origin` agree.
async fn as_page_on(
    gateway: &test_support::Gateway,
    host: &str,
    head: &str,
    body: &str,
) -> anyhow::Result<Option<u16>> {
    let mut tcp = TcpStream::connect(gateway.addr()).await?;
    let req = format!(
        "{head}\r\nHost: {host}\r\nOrigin: http://{host}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await?;
    read_status(&mut tcp).await
}

#[tokio::test]
async fn dns_rebinding_is_not_same_origin_on_a_loopback_listener() -> anyhow::Result<()> {
    // The bare install: loopback, anonymous publish, a direct app on any topic.
    let edge = EdgeGateway::start("").await?;
    let gw = &edge.gateway;
    let mut ws = subscriber(gw, "calm").await?;
    let port = gw.addr().port();
    let upgrade = "GET /v1/ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13";
    let sse = "GET /v1/sse/pubsub?topic=calm HTTP/1.1";
    let publish = "POST /v1/publish HTTP/1.1\r\nContent-Type: application/json";
    let msg = r#"{"topic":"calm","data":{"n":9}}"#;
    // A page on evil.test, whose name the attacker made resolve to 127.0.0.1.
    let evil = format!("evil.test:{port}");
    assert_eq!(
        as_page_on(gw, &evil, upgrade, "").await?,
        Some(403),
        "WebSocket"
    );
    assert_eq!(as_page_on(gw, &evil, sse, "").await?, Some(403), "SSE");
    assert_eq!(
        as_page_on(gw, &evil, publish, msg).await?,
        Some(403),
        "publish"
    );
    // Pages the gateway itself can have served still pass.
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        assert_eq!(
            as_page_on(gw, &host, upgrade, "").await?,
            Some(101),
            "{host}"
        );
    }
    // Nothing the refused publish carried arrived: the next message is n = 1.
    still_serves(gw, None, &mut ws, "calm", 1).await
}

#[tokio::test]
async fn the_origin_is_forwarded_to_the_lambda_by_default() -> anyhow::Result<()> {
    let s = Setup::start().await?;
    let mut tcp = TcpStream::connect(s.edge.gateway.addr()).await?;
    let origin = [("Origin", "https://app.example.com")];
    let status = ws_handshake(&mut tcp, b"", "/v1/ws?app=edge", &origin).await?;
    assert_eq!(status, Some(101));
    assert_eq!(
        peer_event(&mut tcp).await?["origin"],
        "https://app.example.com"
    );
    Ok(())
}

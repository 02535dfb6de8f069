//! The real client address (issue 11 point 1): behind HAProxy or an NLB it
//! comes from the PROXY protocol (v1, v2) or from `X-Forwarded-For` of a
//! trusted proxy only. It is what the (PHP) lambda sees as `remote_addr`,
//! what decides anonymous publishing (issue 11 point 3), and what the
//! per-address cap counts. A connection without a valid PROXY header is
//! closed; a spoofed `X-Forwarded-For` from anyone else is ignored.

mod edge;

use std::net::SocketAddr;

use edge::{
    closed_within, connect_from, peer_event, read_status, still_serves, subscriber, ws_handshake,
    EdgeGateway, KeepAlive,
};
use serde_json::json;
use switchboard::transport::proxy_protocol::v2_header;
use test_support::{http_request, Gateway, WAIT};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// [`EdgeGateway`] with top-level `top` and `[http]` `http`.
struct Setup {
    edge: EdgeGateway,
}

impl Setup {
    async fn start(top: &str, http: &str) -> anyhow::Result<Self> {
        let edge = EdgeGateway::start(&format!("{top}\n[http]\n{http}")).await?;
        Ok(Self { edge })
    }

    fn addr(&self) -> SocketAddr {
        self.edge.gateway.addr()
    }

    /// The `remote_addr` the lambda was given for a WebSocket opened on a
    /// connection from `source` that starts with `prefix`, with `headers`.
    async fn remote_addr(
        &self,
        source: &str,
        prefix: &[u8],
        headers: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        let mut tcp = connect_from(source, self.addr()).await?;
        let status = ws_handshake(&mut tcp, prefix, "/v1/ws?app=edge", headers).await?;
        anyhow::ensure!(status == Some(101), "upgrade answered {status:?}");
        let data = peer_event(&mut tcp).await?;
        Ok(data["remote_addr"].as_str().unwrap_or_default().to_owned())
    }
}

/// A v2 header with a TLV after the addresses, as an NLB adds (type 0xEA).
fn v2(src: Option<SocketAddr>) -> Vec<u8> {
    v2_header(src, &[0xea, 0, 3, 1, 2, 3])
}

#[tokio::test]
async fn proxy_protocol_v1_gives_the_lambda_the_client_address() -> anyhow::Result<()> {
    let s = Setup::start("", "proxy_protocol = true").await?;
    let four = s
        .remote_addr(
            "127.0.0.1",
            b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n",
            &[],
        )
        .await?;
    assert_eq!(four, "203.0.113.7");
    let six = s
        .remote_addr("127.0.0.1", b"PROXY TCP6 2001:db8::7 ::1 5555 80\r\n", &[])
        .await?;
    assert_eq!(six, "2001:db8::7");
    let unknown = s
        .remote_addr("127.0.0.1", b"PROXY UNKNOWN\r\n", &[])
        .await?;
    assert_eq!(unknown, "127.0.0.1", "UNKNOWN: the TCP peer stands");
    Ok(())
}

#[tokio::test]
async fn proxy_protocol_v2_gives_the_lambda_the_client_address() -> anyhow::Result<()> {
    let s = Setup::start("", "proxy_protocol = true").await?;
    let src: SocketAddr = "198.51.100.4:4000".parse()?;
    assert_eq!(
        s.remote_addr("127.0.0.1", &v2(Some(src)), &[]).await?,
        "198.51.100.4"
    );
    let src6: SocketAddr = "[2001:db8::9]:9".parse()?;
    assert_eq!(
        s.remote_addr("127.0.0.1", &v2(Some(src6)), &[]).await?,
        "2001:db8::9"
    );
    assert_eq!(
        s.remote_addr("127.0.0.1", &v2(None), &[]).await?,
        "127.0.0.1"
    );
    Ok(())
}

#[tokio::test]
async fn connections_without_a_valid_proxy_header_are_closed() -> anyhow::Result<()> {
    let s = Setup::start("", "proxy_protocol = true\nheader_timeout_ms = 300").await?;
    let v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n";
    let mut keep = KeepAlive::open_with_prefix(s.addr(), v1).await?;
    // A first request at once: then it waits under idle_timeout, not header_timeout.
    assert_eq!(keep.request("GET", "/healthz", None).await?.0, 200);
    let bad: [&[u8]; 4] = [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PROXY TCP4 203.0.113.7 nonsense 1 2\r\nGET /healthz HTTP/1.1\r\n\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xffGET /healthz HTTP/1.1\r\n\r\n",
        b"PROXY TCP4 203.0",
    ];
    for bytes in bad {
        let mut tcp = TcpStream::connect(s.addr()).await?;
        tcp.write_all(bytes).await?;
        assert_eq!(
            read_status(&mut tcp).await?,
            None,
            "{:?} was answered",
            String::from_utf8_lossy(bytes)
        );
        assert!(closed_within(&mut tcp, WAIT).await);
    }
    let m = keep.metrics().await?;
    let refused = m.node("switchboard_connections_refused{reason=\"proxy_header\"}");
    assert_eq!(refused, 4.0);
    // A client's own PROXY header after the proxy's is not believed.
    let mut spoof = TcpStream::connect(s.addr()).await?;
    let two = [&v1[..], b"PROXY TCP4 192.0.2.99 127.0.0.1 1 2\r\n"].concat();
    let status = ws_handshake(&mut spoof, &two, "/v1/ws?app=edge", &[]).await?;
    assert_eq!(status, Some(400));
    // Well-behaved proxied clients go on.
    assert_eq!(s.remote_addr("127.0.0.1", v1, &[]).await?, "203.0.113.7");
    assert_eq!(keep.request("GET", "/healthz", None).await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn forwarded_for_is_believed_from_trusted_proxies_only() -> anyhow::Result<()> {
    let s = Setup::start("", "trusted_proxies = [\"127.0.0.2\"]").await?;
    let mut ws = subscriber(&s.edge.gateway, "calm").await?;
    let xff = [("X-Forwarded-For", "198.51.100.9")];
    assert_eq!(s.remote_addr("127.0.0.2", b"", &xff).await?, "198.51.100.9");
    assert_eq!(
        s.remote_addr("127.0.0.1", b"", &xff).await?,
        "127.0.0.1",
        "a client that is not a trusted proxy cannot name itself"
    );
    let spoofed = [("X-Forwarded-For", "203.0.113.1, 198.51.100.9")];
    assert_eq!(
        s.remote_addr("127.0.0.2", b"", &spoofed).await?,
        "198.51.100.9",
        "what the client wrote left of the proxy's entry is not believed"
    );
    assert_eq!(s.remote_addr("127.0.0.2", b"", &[]).await?, "127.0.0.2");
    still_serves(&s.edge.gateway, None, &mut ws, "calm", 1).await
}

async fn anonymous_publish(
    gateway: &Gateway,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, serde_json::Value)> {
    let body = json!({"topic": "t", "data": 1}).to_string();
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    let resp = http_request(
        "POST",
        &gateway.url("/v1/publish"),
        &all,
        Some(body.as_bytes()),
    )
    .await?;
    Ok((resp.status, resp.json().unwrap_or_default()))
}

#[tokio::test]
async fn anonymous_publish_is_refused_from_a_non_loopback_client() -> anyhow::Result<()> {
    let s = Setup::start("", "trusted_proxies = [\"127.0.0.1\"]").await?;
    let far = [("X-Forwarded-For", "203.0.113.5")];
    let (status, body) = anonymous_publish(&s.edge.gateway, &far).await?;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    let near = [("X-Forwarded-For", "127.0.0.9")];
    assert_eq!(anonymous_publish(&s.edge.gateway, &near).await?.0, 200);
    assert_eq!(anonymous_publish(&s.edge.gateway, &[]).await?.0, 200);

    // Through the PROXY protocol too.
    let p = Setup::start("", "proxy_protocol = true").await?;
    let far_proxy = b"PROXY TCP4 203.0.113.5 127.0.0.1 5555 80\r\n";
    let mut keep = KeepAlive::open_with_prefix(p.addr(), far_proxy).await?;
    let (status, body) = keep
        .request(
            "POST",
            "/v1/publish",
            Some(&json!({"topic": "t", "data": 1})),
        )
        .await?;
    assert_eq!(status, 403, "{body}");

    // allow_anonymous_publish lets it through.
    let open = Setup::start(
        "allow_anonymous_publish = true",
        "trusted_proxies = [\"127.0.0.1\"]",
    )
    .await?;
    assert_eq!(anonymous_publish(&open.edge.gateway, &far).await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn the_address_cap_counts_forwarded_clients_behind_a_trusted_proxy() -> anyhow::Result<()> {
    let s = Setup::start(
        "",
        "trusted_proxies = [\"127.0.0.1\"]\nmax_connections_per_ip = 2",
    )
    .await?;
    let one = [("X-Forwarded-For", "198.51.100.1")];
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(s.addr()).await?;
        let status = ws_handshake(&mut tcp, b"", "/v1/ws?app=edge", &one).await?;
        assert_eq!(status, Some(101));
        held.push(tcp);
    }
    let mut third = TcpStream::connect(s.addr()).await?;
    let status = ws_handshake(&mut third, b"", "/v1/ws?app=edge", &one).await?;
    assert_eq!(status, Some(429), "a third stream of one forwarded address");
    // The proxy itself is not capped: another client through it is served.
    let two = [("X-Forwarded-For", "198.51.100.2")];
    assert_eq!(s.remote_addr("127.0.0.1", b"", &two).await?, "198.51.100.2");
    drop(held);
    Ok(())
}

#[tokio::test]
async fn the_address_cap_counts_the_proxy_protocol_client_address() -> anyhow::Result<()> {
    let s = Setup::start("", "proxy_protocol = true\nmax_connections_per_ip = 2").await?;
    let named = b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n";
    // Two connections of one client, through one proxy address.
    let mut first = KeepAlive::open_with_prefix(s.addr(), named).await?;
    let mut second = KeepAlive::open_with_prefix(s.addr(), named).await?;
    for keep in [&mut first, &mut second] {
        assert_eq!(keep.request("GET", "/healthz", None).await?.0, 200);
    }
    // A third of that client is closed at once and counted.
    let mut third = TcpStream::connect(s.addr()).await?;
    third.write_all(named).await?;
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    assert!(
        closed_within(&mut third, WAIT).await,
        "a third connection of 203.0.113.7 is open"
    );
    let refused = "switchboard_connections_refused{reason=\"max_connections_per_ip\"}";
    first.wait_metric(refused, ">= 1", |v| v >= 1.0).await?;
    // The proxy's address is not what is capped: another client through it
    // is served, and so is the first client's open connection.
    let other = b"PROXY TCP4 203.0.113.8 127.0.0.1 5556 80\r\n";
    assert_eq!(s.remote_addr("127.0.0.1", other, &[]).await?, "203.0.113.8");
    assert_eq!(second.request("GET", "/healthz", None).await?.0, 200);
    Ok(())
}

//! The HTTP/1.1 listener, plain or TLS: routes client, publisher and
//! operator requests, upgrades WebSockets and hands their sockets to
//! [`super::ws::run`].

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use switchboard_protocol::AppName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::edge::{ConnSlot, IpSlot, Refusal};
use super::idle::{ByteCount, Counted, HeadTimer};
use super::tls::HandshakeError;
use super::{origin, proxy_protocol, real_ip, tls};
use crate::gateway::Gateway;
use crate::ops::api;
use crate::stream::{Connection, Transport};
use crate::tls::Socket;

pub type Response = hyper::Response<Body>;

/// A whole body, or an SSE stream fed by its connection's task.
pub enum Body {
    Full(Option<Bytes>),
    Sse(mpsc::Receiver<Bytes>),
    /// A body that holds a place under `max_connections_per_ip` while it lasts.
    Held(Box<Body>, IpSlot),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Sse(rx) => rx.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b)))),
            Body::Held(body, _) => Pin::new(&mut **body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Held(body, _) => body.is_end_stream(),
            other => matches!(other, Body::Full(None)),
        }
    }
}

pub fn json_response(status: u16, body: &Value) -> Response {
    hyper::Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Body::Full(Some(Bytes::from(body.to_string()))))
        .unwrap_or_else(|_| hyper::Response::new(Body::Full(None)))
}

/// `{"error":{"code":..,"message":..}}` with `status`.
pub fn json_error(status: u16, code: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

pub fn text_response(status: u16, content_type: &str, body: String) -> Response {
    hyper::Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", content_type)
        .body(Body::Full(Some(Bytes::from(body))))
        .unwrap_or_else(|_| hyper::Response::new(Body::Full(None)))
}

/// Longest back-off after a failed accept (out of descriptors and the like).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// What one connection's requests know of it.
pub struct Peer {
    /// The TCP peer, or the client its PROXY protocol header named.
    pub addr: SocketAddr,
    /// It came over TLS: its own origin is `https://`.
    pub tls: bool,
    /// Held while the connection (or the WebSocket it became) is open.
    _slot: ConnSlot,
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Clients, publishers and operators (`listen`).
    Main,
    /// `GET /metrics` only (`metrics_listen`), without a PROXY header or
    /// TLS: for a scraper on a private address.
    Metrics,
}

/// Accepts connections until `stop` is cancelled (the drain's first step);
/// returning drops the listener. Nothing here waits for a client: the caps
/// are counters, everything else runs in the connection's task.
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, stop: CancellationToken, role: Role) {
    let mut backoff = Duration::ZERO;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, remote)) => {
                    backoff = Duration::ZERO;
                    // Over a cap: `tcp` is dropped, so closed at once (counted).
                    let Ok(slot) = gw.edge.admit(remote.ip()) else { continue };
                    let _ = tcp.set_nodelay(true);
                    gw.tracker.spawn(serve_connection(gw.clone(), tcp, remote, slot, role));
                }
                Err(e) => {
                    // EMFILE and the like: the connection stays in the backlog
                    // and accept fails again at once, so back off (doubling).
                    gw.edge.stats.accept_errors.inc();
                    backoff = (backoff * 2).clamp(Duration::from_millis(5), MAX_ACCEPT_BACKOFF);
                    tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
            },
        }
    }
}

/// One connection: PROXY header (if configured), TLS handshake (if
/// configured), then HTTP/1.1 with the header, idle and head-size bounds,
/// until it ends or the drain.
async fn serve_connection(
    gw: Arc<Gateway>,
    mut tcp: TcpStream,
    remote: SocketAddr,
    mut slot: ConnSlot,
    role: Role,
) {
    let edge = &gw.config.edge;
    let mut addr = remote;
    if edge.proxy_protocol && role == Role::Main {
        let header =
            tokio::time::timeout(edge.header_timeout, proxy_protocol::read_header(&mut tcp));
        match header.await {
            Ok(Ok(source)) => addr = source.unwrap_or(remote),
            Ok(Err(e)) => {
                gw.edge.refuse(Refusal::ProxyHeader);
                return tracing::debug!(error = %e, %remote, "PROXY protocol header refused");
            }
            Err(_) => {
                gw.edge.refuse(Refusal::ProxyHeader);
                return tracing::debug!(%remote, "no PROXY protocol header within header_timeout");
            }
        }
        if gw.edge.admit_proxied(&mut slot, addr.ip()).is_err() {
            return;
        }
    }
    // The handshake and the first head share `header_timeout`.
    let mut first_head = edge.header_timeout;
    // The metrics listener stays plain HTTP, for scrapers on the inside.
    let tls = edge.tls.as_ref().filter(|_| role == Role::Main);
    let socket = match tls {
        None => Socket::Plain(tcp),
        Some(server) => {
            let started = tokio::time::Instant::now();
            let acceptor = tokio_rustls::TlsAcceptor::from(server.config.clone());
            // Boxed: the handshake's state (over a kilobyte) would otherwise
            // stay in this future for the connection's life, TLS or not.
            let handshake = tls::accept(&acceptor, tcp, edge.header_timeout, edge.max_head_bytes);
            match Box::pin(handshake).await {
                Ok(socket) => {
                    first_head = edge
                        .header_timeout
                        .saturating_sub(started.elapsed())
                        .max(Duration::from_millis(1));
                    socket
                }
                Err(HandshakeError::Timeout) => {
                    gw.edge.stats.header_timeouts.inc();
                    return tracing::debug!(%remote, "no TLS handshake within header_timeout");
                }
                Err(e) => {
                    gw.edge.refuse(Refusal::TlsHandshake);
                    return tracing::debug!(error = %e, %remote, "TLS handshake refused");
                }
            }
        }
    };
    // What hyper reads, and `count` counts, is the plaintext.
    let count = Arc::new(ByteCount::default());
    let timer = HeadTimer {
        header: edge.header_timeout,
        idle: edge.idle_timeout,
        count: count.clone(),
    };
    let peer = Arc::new(Peer {
        addr,
        tls: socket.is_tls(),
        _slot: slot,
    });
    let svc_gw = gw.clone();
    let svc = service_fn(move |req| {
        let (gw, peer) = (svc_gw.clone(), peer.clone());
        async move {
            match role {
                Role::Main => route(gw, req, peer).await,
                Role::Metrics => Ok(route_metrics(&gw, &req)),
            }
        }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .timer(timer)
        .header_read_timeout(first_head)
        .max_header_size(edge.max_head_bytes)
        .serve_connection(TokioIo::new(Counted::new(socket, count)), svc)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        _ = gw.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        if e.is_timeout() {
            gw.edge.stats.header_timeouts.inc();
        }
        tracing::debug!(error = %e, %remote, "connection ended");
    }
}

async fn route(
    gw: Arc<Gateway>,
    req: Request<Incoming>,
    peer: Arc<Peer>,
) -> Result<Response, Infallible> {
    let path = req.uri().path().to_owned();
    let via_proxy = !gw.edge.counts_connection_of(peer.addr.ip());
    let client = real_ip::client_ip(peer.addr.ip(), req.headers(), &gw.edge.trusted_proxies);
    if path.starts_with("/v1/") {
        let own = if peer.tls { "https" } else { "http" };
        let scheme = origin::request_scheme(req.headers(), own, via_proxy);
        // A loopback listener reached directly (no trusted proxy that set
        // `Host`) takes only loopback names as its own origin: DNS rebinding.
        let loopback_names = !via_proxy && gw.config.listen.ip().is_loopback();
        let allowed = &gw.config.edge.allowed_origins;
        if !origin::allowed(req.headers(), scheme, allowed, loopback_names) {
            gw.edge.stats.forbidden_origins.inc();
            return Ok(json_error(
                403,
                "forbidden_origin",
                "this Origin may not use this gateway (allowed_origins)",
            ));
        }
    }
    let resp = match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => text_response(200, "text/plain", "ok\n".into()),
        (&Method::GET, "/readyz") => api::readyz(&gw),
        // On its own listener: not here.
        (_, "/metrics") if gw.config.metrics_listen.is_some() => not_found(),
        (&Method::GET, "/metrics") => api::metrics(&gw, req.headers()),
        (&Method::GET, "/v1/admin/apps") => api::admin_apps(&gw, req.headers()),
        // The long handlers are boxed: hyper keeps one allocation the size
        // of this future per connection for the connection's life.
        (&Method::POST, "/v1/publish") => Box::pin(api::publish(&gw, req, client)).await,
        (&Method::GET, "/v1/ws") => match stream_slot(&gw, via_proxy, client) {
            Ok(slot) => websocket(gw, req, peer, client, slot),
            Err(refused) => too_many(refused),
        },
        (&Method::GET, p) if p.starts_with("/v1/sse/") => {
            let slot = match stream_slot(&gw, via_proxy, client) {
                Ok(slot) => slot,
                Err(refused) => return Ok(too_many(refused)),
            };
            let app = p.trim_start_matches("/v1/sse/").to_owned();
            let (params, resume) = query_params(req.uri().query());
            let last_event_id = req
                .headers()
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let headers = header_map(&gw, req.headers());
            let resp = Box::pin(super::sse::open(
                gw,
                &app,
                params,
                last_event_id.or(resume),
                headers,
                client.to_string(),
            ))
            .await;
            match slot {
                Some(slot) => resp.map(|body| Body::Held(Box::new(body), slot)),
                None => resp,
            }
        }
        (&Method::GET, "/v1/_echo") if gw.config.ws_echo => echo_websocket(gw, req, peer),
        (_, "/healthz" | "/readyz" | "/metrics" | "/v1/admin/apps" | "/v1/publish" | "/v1/ws") => {
            json_error(405, "method_not_allowed", "method not allowed on this path")
        }
        _ => not_found(),
    };
    Ok(resp)
}

/// The metrics listener's one endpoint.
fn route_metrics(gw: &Gateway, req: &Request<Incoming>) -> Response {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => api::metrics(gw, req.headers()),
        (_, "/metrics") => json_error(405, "method_not_allowed", "method not allowed on this path"),
        _ => not_found(),
    }
}

fn not_found() -> Response {
    json_error(404, "not_found", "no such endpoint")
}

/// Behind a trusted proxy the connection is not counted per address: each
/// WebSocket or SSE request is, by its forwarded address, for its life.
fn stream_slot(
    gw: &Arc<Gateway>,
    via_proxy: bool,
    client: IpAddr,
) -> Result<Option<IpSlot>, Refusal> {
    if !via_proxy {
        return Ok(None);
    }
    gw.edge.claim_ip(client).map(Some)
}

fn too_many(_: Refusal) -> Response {
    json_error(
        429,
        "too_many_connections",
        "too many connections from this address (max_connections_per_ip)",
    )
}

fn websocket(
    gw: Arc<Gateway>,
    mut req: Request<Incoming>,
    peer: Arc<Peer>,
    client: IpAddr,
    slot: Option<IpSlot>,
) -> Response {
    let accept = match super::ws::handshake::accept(req.method(), req.headers()) {
        Ok(a) => a,
        Err(e) => return json_error(400, "bad_handshake", &e.to_string()),
    };
    let (mut params, resume) = query_params(req.uri().query());
    let shortcut = match params.remove("app") {
        None => None,
        Some(Value::String(app)) => match AppName::new(&app) {
            Ok(app) => Some(super::ws::Shortcut {
                app,
                params,
                resume,
            }),
            Err(e) => return json_error(400, "bad_app", &e.to_string()),
        },
        Some(_) => None,
    };
    if gw.is_draining() {
        return json_error(503, "draining", "gateway is draining");
    }
    let headers = header_map(&gw, req.headers());
    let task_gw = gw.clone();
    // The connection's places under the caps go with its socket.
    let held = (peer, slot);
    switch_protocols(&gw, &mut req, accept, move |tcp, leftover| async move {
        let _held = held;
        let conn = Connection::new(task_gw, Transport::Ws, headers, client.to_string());
        super::ws::run(conn, tcp, leftover, shortcut).await;
    })
}

/// `GET /v1/_echo` (test only, `serve --ws-echo`): a WebSocket that echoes
/// every message through the gateway's own framing (`ws::echo`).
fn echo_websocket(gw: Arc<Gateway>, mut req: Request<Incoming>, peer: Arc<Peer>) -> Response {
    let accept = match super::ws::handshake::accept(req.method(), req.headers()) {
        Ok(a) => a,
        Err(e) => return json_error(400, "bad_handshake", &e.to_string()),
    };
    let limits = super::ws::echo::EchoLimits {
        max_message: gw.config.limits.max_frame_bytes,
        write_timeout: gw.config.limits.write_timeout,
    };
    let shutdown = gw.shutdown.clone();
    switch_protocols(&gw, &mut req, accept, move |tcp, leftover| async move {
        let _held = peer;
        super::ws::echo::run(tcp, leftover, limits, shutdown).await;
    })
}

/// Answers `101 Switching Protocols`; once hyper hands over the socket,
/// `serve` runs on it (with the bytes hyper had read past the head) as a
/// task of the gateway's tracker, so the drain waits for it.
fn switch_protocols<F, Fut>(
    gw: &Arc<Gateway>,
    req: &mut Request<Incoming>,
    accept: String,
    serve: F,
) -> Response
where
    F: FnOnce(Socket, Bytes) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let upgrade = hyper::upgrade::on(req);
    gw.tracker.spawn(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => return tracing::debug!(error = %e, "websocket upgrade failed"),
        };
        let Ok(parts) = upgraded.downcast::<TokioIo<Counted<Socket>>>() else {
            return tracing::warn!("websocket upgrade: unexpected IO type");
        };
        serve(parts.io.into_inner().into_inner(), parts.read_buf).await;
    });
    hyper::Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", accept)
        .body(Body::Full(None))
        .unwrap_or_else(|_| json_error(500, "error", "internal"))
}

/// Query parameters as JSON strings, and the `resume` cursor apart: the one
/// place `resume` leaves the params (WebSocket shortcut and SSE alike), so a
/// lambda never sees it as a param.
fn query_params(query: Option<&str>) -> (Map<String, Value>, Option<String>) {
    let mut params = Map::new();
    let mut resume = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k == "resume" {
            resume = Some(v.into_owned());
        } else {
            params.insert(k.into_owned(), Value::String(v.into_owned()));
        }
    }
    (params, resume)
}

/// The request headers some app forwards (lowercase names); each app then
/// forwards its own allowlist. Others are not kept: connections stay small.
fn header_map(gw: &Gateway, headers: &hyper::HeaderMap) -> Map<String, Value> {
    gw.forwarded_headers
        .iter()
        .filter_map(|name| {
            let v = headers.get(name.as_str())?.to_str().ok()?;
            Some((name.clone(), Value::String(v.to_owned())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::query_params;
    use serde_json::Value;

    #[test]
    fn resume_is_taken_out_of_the_params() {
        let (params, resume) = query_params(Some("video=1&resume=e~t~7&b=x%20y"));
        assert_eq!(resume.as_deref(), Some("e~t~7"));
        assert!(!params.contains_key("resume"));
        assert_eq!(params.get("video"), Some(&Value::String("1".into())));
        assert_eq!(params.get("b"), Some(&Value::String("x y".into())));
        assert_eq!(query_params(None), (serde_json::Map::new(), None));
    }
}

//! The HTTP/1.1 listener: routes client, publisher and operator requests,
//! upgrades WebSockets and hands their sockets to [`super::ws::run`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

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

use crate::gateway::Gateway;
use crate::ops::api;
use crate::stream::{Connection, Transport};

pub type Response = hyper::Response<Body>;

/// A whole body, or an SSE stream fed by its connection's task.
pub enum Body {
    Full(Option<Bytes>),
    Sse(mpsc::Receiver<Bytes>),
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
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
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

/// Accepts connections until `stop` is cancelled (the drain's first step);
/// returning drops the listener.
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, remote)) => {
                    let _ = tcp.set_nodelay(true);
                    gw.tracker.spawn(serve_connection(gw.clone(), tcp, remote));
                }
                Err(e) => {
                    // Out of descriptors and the like: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn serve_connection(gw: Arc<Gateway>, tcp: TcpStream, remote: SocketAddr) {
    let svc_gw = gw.clone();
    let svc = service_fn(move |req| route(svc_gw.clone(), req, remote));
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(tcp), svc)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = gw.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn route(
    gw: Arc<Gateway>,
    req: Request<Incoming>,
    remote: SocketAddr,
) -> Result<Response, Infallible> {
    let path = req.uri().path().to_owned();
    let resp = match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => text_response(200, "text/plain", "ok\n".into()),
        (&Method::GET, "/readyz") => api::readyz(&gw),
        (&Method::GET, "/metrics") => api::metrics(&gw),
        (&Method::GET, "/v1/admin/apps") => api::admin_apps(&gw, req.headers()),
        // The long handlers are boxed: hyper keeps one allocation the size
        // of this future per connection for the connection's life.
        (&Method::POST, "/v1/publish") => Box::pin(api::publish(&gw, req)).await,
        (&Method::GET, "/v1/ws") => websocket(gw, req, remote),
        (&Method::GET, p) if p.starts_with("/v1/sse/") => {
            let app = p.trim_start_matches("/v1/sse/").to_owned();
            let (mut params, resume) = query_params(req.uri().query());
            let last_event_id = req
                .headers()
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            params.remove("resume");
            let headers = header_map(&gw, req.headers());
            Box::pin(super::sse::open(
                gw,
                &app,
                params,
                last_event_id.or(resume),
                headers,
                remote.ip().to_string(),
            ))
            .await
        }
        (_, "/healthz" | "/readyz" | "/metrics" | "/v1/admin/apps" | "/v1/publish" | "/v1/ws") => {
            json_error(405, "method_not_allowed", "method not allowed on this path")
        }
        _ => json_error(404, "not_found", "no such endpoint"),
    };
    Ok(resp)
}

fn websocket(gw: Arc<Gateway>, mut req: Request<Incoming>, remote: SocketAddr) -> Response {
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
    let upgrade = hyper::upgrade::on(&mut req);
    let task_gw = gw.clone();
    gw.tracker.spawn(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => return tracing::debug!(error = %e, "websocket upgrade failed"),
        };
        let Ok(parts) = upgraded.downcast::<TokioIo<TcpStream>>() else {
            return tracing::warn!("websocket upgrade: unexpected IO type");
        };
        let conn = Connection::new(task_gw, Transport::Ws, headers, remote.ip().to_string());
        super::ws::run(conn, parts.io.into_inner(), parts.read_buf, shortcut).await;
    });
    hyper::Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", accept)
        .body(Body::Full(None))
        .unwrap_or_else(|_| json_error(500, "error", "internal"))
}

/// Query parameters as JSON strings, and the `resume` cursor apart.
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

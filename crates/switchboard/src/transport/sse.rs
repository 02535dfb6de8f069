//! Server-Sent Events: one stream per request, receive only. The response
//! status waits for the open's outcome (403/404/502 with a JSON body, or 200
//! and the event stream).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Map, Value};
use switchboard_protocol::{AppName, CloseReason, StreamName};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::http::{json_error, Body, Response};
use crate::gateway::Gateway;
use crate::stream::outbox::Outbox;
use crate::stream::{Body as EventBody, Connection, Out, Transport};

/// Body chunks buffered per SSE response before the connection's task waits.
const BODY_CHUNKS: usize = 64;

/// Answers `GET /v1/sse/{app}`.
pub async fn open(
    gw: Arc<Gateway>,
    app: &str,
    params: Map<String, Value>,
    resume: Option<String>,
    headers: Map<String, Value>,
    remote: String,
) -> Response {
    let Ok(app) = AppName::new(app) else {
        return rejected(404, &format!("unknown app {app:?}"));
    };
    let mut conn = Connection::new(gw.clone(), Transport::Sse, headers, remote);
    let Ok(name) = StreamName::new("sse") else {
        return json_error(500, "error", "internal");
    };
    let mut out = Vec::new();
    conn.open(name, app, params, resume, &mut out).await;
    // Wait for the open's outcome (the lambda call is bounded by its timeout and retries).
    loop {
        if let Some(i) = out
            .iter()
            .position(|o| matches!(o, Out::Opened { .. } | Out::Rejected { .. }))
        {
            if let Out::Rejected { code, reason, .. } = &out[i] {
                return rejected(*code, reason);
            }
            out.remove(i);
            break;
        }
        if let Some(Out::Error { message, .. }) = out.first() {
            return json_error(400, "rejected", message);
        }
        tokio::select! {
            _ = conn.outbox.ready() => Box::pin(conn.on_inbox(&mut out)).await,
            _ = gw.shutdown.cancelled() => return json_error(503, "draining", "gateway is draining"),
        }
    }
    let (tx, rx) = mpsc::channel(BODY_CHUNKS);
    gw.node.sse_connections_total.inc();
    gw.tracker.spawn(run(conn, tx, out));
    hyper::Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::Sse(rx))
        .unwrap_or_else(|_| json_error(500, "error", "internal"))
}

fn rejected(code: u16, reason: &str) -> Response {
    let body = json!({"error": {"code": "rejected", "status": code, "reason": reason}});
    super::http::json_response(code, &body)
}

/// Runs one SSE response until it ends. A plain fn returning an `async
/// move` block (an `async fn` would keep its arguments twice for the
/// response's life), with the rare or large futures boxed: an idle response's
/// task stays small.
#[allow(clippy::manual_async_fn)]
fn run(
    mut conn: Connection,
    tx: mpsc::Sender<Bytes>,
    mut out: Vec<Out>,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        let gw = conn.gateway().clone();
        gw.node.connections.add(1);
        let every = gw.config.limits.keepalive;
        let mut keepalive = tokio::time::interval_at(Instant::now() + every, every);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut draining = false;
        let write_timeout = gw.config.limits.write_timeout;
        let outbox = conn.outbox.clone();
        let mut end = CloseReason::Client;
        // One registration with the shared shutdown token, not one per wake-up.
        let shutdown = gw.shutdown.cancelled();
        tokio::pin!(shutdown);
        'conn: loop {
            for o in out.drain(..) {
                let (chunks, last) = encode(o);
                for c in chunks {
                    gw.node.bytes_out.add(c.len() as u64);
                    if let Err(reason) = send(&tx, c, write_timeout, &outbox).await {
                        end = reason;
                        break 'conn;
                    }
                }
                if last {
                    break 'conn;
                }
            }
            tokio::select! {
                _ = &mut shutdown, if !draining => {
                    draining = true;
                    conn.close_all(CloseReason::Shutdown, &mut out);
                }
                _ = conn.outbox.ready() => Box::pin(conn.on_inbox(&mut out)).await,
                _ = keepalive.tick() => {
                    let cursor = conn.cursors().into_iter().next().and_then(|(_, c)| c.as_str().map(str::to_owned)).unwrap_or_default();
                    if let Err(reason) = send(&tx, Bytes::from(format!(": ping {cursor}\n\n")), write_timeout, &outbox).await {
                        end = reason;
                        break;
                    }
                }
                _ = tx.closed() => break,
            }
        }
        match end {
            CloseReason::SlowConsumer => conn.close_slow_consumer(&mut Vec::new()),
            other => conn.close_all(other, &mut Vec::new()),
        }
        gw.node.connections.add(-1);
    }
}

/// Hands a chunk to the response body: at once when the channel has room
/// (no future), else waiting in [`send_waiting`], boxed.
async fn send(
    tx: &mpsc::Sender<Bytes>,
    chunk: Bytes,
    timeout: std::time::Duration,
    outbox: &Outbox,
) -> Result<(), CloseReason> {
    match tx.try_send(chunk) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Closed(_)) => Err(CloseReason::Client),
        Err(mpsc::error::TrySendError::Full(chunk)) => {
            Box::pin(send_waiting(tx, chunk, timeout, outbox)).await
        }
    }
}

/// A client that stops reading fills the socket, then the body channel: past
/// the write timeout it is a dead peer, and once it falls more than its
/// queue behind (policy `close`) a slow consumer.
async fn send_waiting(
    tx: &mpsc::Sender<Bytes>,
    chunk: Bytes,
    timeout: std::time::Duration,
    outbox: &Outbox,
) -> Result<(), CloseReason> {
    tokio::select! {
        biased;
        sent = tokio::time::timeout(timeout, tx.send(chunk)) => match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(CloseReason::Client),
            Err(_) => Err(CloseReason::Timeout),
        },
        _ = outbox.overflowed() => Err(CloseReason::SlowConsumer),
    }
}

/// SSE chunks for one output; `true` when the response ends after them.
fn encode(o: Out) -> (Vec<Bytes>, bool) {
    match o {
        Out::Event {
            cursor,
            event,
            body,
            ..
        } => {
            let mut head = String::with_capacity(64);
            if let Some(c) = &cursor {
                head.push_str("id: ");
                head.push_str(c.as_str());
                head.push('\n');
            }
            if let Some(e) = event.as_deref() {
                // An event name with a line break would end the field early.
                head.push_str("event: ");
                head.extend(e.chars().filter(|c| *c != '\n' && *c != '\r'));
                head.push('\n');
            }
            match body {
                EventBody::Topic(msg) => (vec![Bytes::from(head), msg.sse_tail().clone()], false),
                EventBody::Data(data) => {
                    head.push_str("data: ");
                    head.push_str(data.get());
                    head.push_str("\n\n");
                    (vec![Bytes::from(head)], false)
                }
            }
        }
        Out::Closed { code, reason, .. } => {
            let data = json!({"code": code, "reason": reason});
            (
                vec![Bytes::from(format!("event: closed\ndata: {data}\n\n"))],
                true,
            )
        }
        Out::Gap { topics, .. } => {
            let data = json!({ "topics": topics });
            (
                vec![Bytes::from(format!("event: gap\ndata: {data}\n\n"))],
                false,
            )
        }
        // Nothing else reaches an SSE client: there is no client-to-server channel.
        Out::Opened { .. } | Out::Rejected { .. } | Out::Error { .. } | Out::Pong => {
            (Vec::new(), false)
        }
    }
}

//! Operator and publisher endpoints: health, readiness, metrics, admin, publish.

use std::net::IpAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request};
use serde_json::{json, Map, Value};
use switchboard_protocol::publish::PublishBody;
use switchboard_protocol::MAX_PUBLISH_BODY;

use crate::gateway::Gateway;
use crate::ops::config::MetricsAuth;
use crate::ops::metrics;
use crate::transport::http::{json_error, json_response, text_response, Response};

pub fn readyz(gw: &Gateway) -> Response {
    if gw.is_ready() {
        text_response(200, "text/plain", "ready\n".into())
    } else {
        text_response(503, "text/plain", "not ready\n".into())
    }
}

/// `GET /metrics`; with `metrics_auth = "admin_key"`, for the admin key only.
pub fn metrics(gw: &Gateway, headers: &HeaderMap) -> Response {
    if gw.config.metrics_auth == MetricsAuth::AdminKey {
        if let Some(denied) = check_admin(gw, headers) {
            return denied;
        }
    }
    let mut sinks: Vec<(&str, &metrics::SinkStats)> = gw
        .sinks
        .values()
        .map(|s| (s.name.as_str(), &*s.stats))
        .collect();
    sinks.sort_by_key(|(n, _)| *n);
    if let Some(bytes) = gw.broker.history_bytes() {
        gw.node.history_bytes.set(bytes as i64);
    }
    let mut text = metrics::render_prometheus(&gw.node, &gw.apps_sorted(), &sinks);
    metrics::render_edge(&mut text, &gw.edge.stats);
    metrics::TASK_RESTARTS.render(&mut text);

    text_response(200, "text/plain; version=0.0.4", text)
}

/// Checks `Authorization: Bearer KEY`: None when allowed, else the error response.
fn check_key(headers: &HeaderMap, key: &str) -> Option<Response> {
    let Some(given) = headers.get(hyper::header::AUTHORIZATION) else {
        return Some(json_error(
            401,
            "unauthorized",
            "missing Authorization: Bearer <key>",
        ));
    };
    let given = given
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), key.as_bytes()) {
        return Some(json_error(403, "forbidden", "wrong key"));
    }
    None
}

/// The admin key's check (admin API, and `/metrics` behind it): None when
/// allowed; with no admin key configured, every request is refused.
fn check_admin(gw: &Gateway, headers: &HeaderMap) -> Option<Response> {
    let Some(key) = &gw.config.admin_key else {
        return Some(json_error(403, "forbidden", "no admin key is configured"));
    };
    check_key(headers, key)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn admin_apps(gw: &Gateway, headers: &HeaderMap) -> Response {
    if let Some(denied) = check_admin(gw, headers) {
        return denied;
    }
    let apps: Map<String, Value> = gw
        .apps_sorted()
        .into_iter()
        .map(|(name, stats)| {
            let mut v = metrics::app_json(stats);
            let lambda = gw
                .config
                .apps
                .iter()
                .find(|a| a.name.as_str() == name)
                .and_then(|a| a.lambda.as_ref());
            v["lambda"] = lambda.map_or(Value::Null, |l| json!(l.url.to_string()));
            (name.to_owned(), v)
        })
        .collect();
    let sinks: Map<String, Value> = gw
        .sinks
        .values()
        .map(|s| {
            let rows = s
                .stats
                .each()
                .into_iter()
                .map(|(name, _, _, v)| (name.to_owned(), json!(v)));
            (s.name.clone(), Value::Object(rows.collect()))
        })
        .collect();
    json_response(200, &json!({ "apps": apps, "sinks": sinks }))
}

/// `client`: the real client address (after PROXY protocol and trusted
/// `X-Forwarded-For`), which decides anonymous publishing.
pub async fn publish(gw: &Arc<Gateway>, req: Request<Incoming>, client: IpAddr) -> Response {
    let resp = publish_inner(gw, req, client).await;
    if resp.status() == 200 {
        // Counted per message inside; nothing to add.
    } else {
        gw.node.publish_errors.inc();
    }
    resp
}

async fn publish_inner(gw: &Arc<Gateway>, req: Request<Incoming>, client: IpAddr) -> Response {
    match &gw.config.publish_key {
        Some(key) => {
            if let Some(denied) = check_key(req.headers(), key) {
                return denied;
            }
        }
        None if !gw.config.allow_anonymous_publish && !client.is_loopback() => {
            return json_error(
                403,
                "forbidden",
                "publishing without a key is allowed from loopback only (allow_anonymous_publish)",
            );
        }
        None => {}
    }
    if !gw.broker.is_ready() {
        return json_error(503, "broker_unavailable", "the broker is not connected");
    }
    let body = Limited::new(req.into_body(), MAX_PUBLISH_BODY).collect();
    let Ok(body) = tokio::time::timeout(gw.config.edge.body_timeout, body).await else {
        gw.edge.stats.body_timeouts.inc();
        let mut resp = json_error(
            408,
            "body_timeout",
            "the request body did not arrive within body_timeout",
        );
        resp.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
        return resp;
    };
    let body = match body {
        Ok(b) => b.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return json_error(
                413,
                "body_too_large",
                &format!("a publish body holds at most {MAX_PUBLISH_BODY} bytes"),
            )
        }
        Err(_) => return json_error(400, "bad_body", "could not read the request body"),
    };
    let parsed = match PublishBody::parse(&body) {
        Ok(p) => p,
        Err(e) => return json_error(e.status, e.code, &e.message),
    };
    let n = parsed.messages.len();
    match gw.broker.publish(parsed.messages).await {
        Ok(ids) => {
            gw.node.published.add(n as u64);
            if parsed.single {
                json_response(200, &json!({ "id": ids.first().map(|i| &**i) }))
            } else {
                let ids: Vec<&str> = ids.iter().map(|i| &**i).collect();
                json_response(200, &json!({ "ids": ids }))
            }
        }
        Err(e) => json_error(503, "broker_unavailable", &e.to_string()),
    }
}

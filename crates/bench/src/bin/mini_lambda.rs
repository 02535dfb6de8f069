//! mini_lambda: the smallest useful lambda, as fast as we can make it, for
//! measuring the gateway's lambda path (bench/lambda.sh) and its timers
//! (bench/timers.sh). It answers each event of a `POST` (any path but
//! `/stats`) in the Lambda protocol of shared/PROTOCOL.md:
//!
//! - `open`: `accept`, then `subscribe` to `params.topic` (deliver `lambda`)
//!   if given, then a timer `t` every `params.timer_ms` ms if given;
//! - `message`: one `push` of the message's `data`, unchanged (so the load
//!   generator's `{"t":..,"seq":..}` stamp reaches the client);
//! - `batch`: one `push` per message, in order;
//! - `timer` and anything else: no actions.
//!
//! `GET /stats` answers the events counted by type (and this process's CPU
//! time) as JSON. A multi-thread runtime (all cores it is given, or
//! `--threads`), HTTP/1.1 keep-alive, loopback only.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

/// Largest request body read (the gateway sends at most `max_batch` events).
const MAX_BODY: usize = 64 << 20;

#[derive(Debug, Parser)]
#[command(
    name = "mini_lambda",
    about = "A minimal, fast Switchboard lambda: open -> accept + subscribe params.topic (+ timer params.timer_ms), message -> push data, batch -> one push per message; GET /stats counts events."
)]
struct Args {
    /// Listen address (loopback only); port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Runtime worker threads (0: every CPU this process may use).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// Events seen, by type, and requests.
#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    bad_requests: AtomicU64,
    events: AtomicU64,
    open: AtomicU64,
    message: AtomicU64,
    batch: AtomicU64,
    batch_messages: AtomicU64,
    client_message: AtomicU64,
    timer: AtomicU64,
    close: AtomicU64,
    other: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    if n > 0 {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// Per-request tallies, added to the shared counters once per request.
#[derive(Default, Debug, PartialEq, Eq)]
struct Tally {
    events: u64,
    open: u64,
    message: u64,
    batch: u64,
    batch_messages: u64,
    client_message: u64,
    timer: u64,
    close: u64,
    other: u64,
}

impl Counts {
    fn add(&self, t: &Tally) {
        add(&self.events, t.events);
        add(&self.open, t.open);
        add(&self.message, t.message);
        add(&self.batch, t.batch);
        add(&self.batch_messages, t.batch_messages);
        add(&self.client_message, t.client_message);
        add(&self.timer, t.timer);
        add(&self.close, t.close);
        add(&self.other, t.other);
    }

    fn json(&self, started: Instant) -> Value {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "pid": std::process::id(),
            "uptime_s": started.elapsed().as_secs_f64(),
            "cpu_us": self_cpu_us(),
            "requests": g(&self.requests),
            "bad_requests": g(&self.bad_requests),
            "events": g(&self.events),
            "open": g(&self.open),
            "message": g(&self.message),
            "batch": g(&self.batch),
            "batch_messages": g(&self.batch_messages),
            "client_message": g(&self.client_message),
            "timer": g(&self.timer),
            "close": g(&self.close),
            "other": g(&self.other),
        })
    }
}

/// `{"v":1,"app":..,"events":[..]}`; only what the answers need is read.
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    events: Vec<InEvent<'a>>,
}

#[derive(Deserialize)]
struct InEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    params: Option<Map<String, Value>>,
    /// Present `null` is data (`Some("null")`); only an absent field is `None`.
    #[serde(default, borrow, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    #[serde(default, borrow)]
    messages: Option<Vec<InMessage<'a>>>,
}

#[derive(Deserialize)]
struct InMessage<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

/// A param given as a JSON number or as a decimal string (query parameters).
fn param_u64(params: &Map<String, Value>, key: &str) -> Option<u64> {
    match params.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // Escaping a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn push(out: &mut Vec<u8>, first: &mut bool, data: &RawValue) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    out.extend_from_slice(b"{\"type\":\"push\",\"data\":");
    out.extend_from_slice(data.get().as_bytes());
    out.push(b'}');
}

/// The answer to one request body: `{"results":[{"actions":[..]},..]}`,
/// one result per event, in order. `Err` on a body that is not the protocol's.
fn answer(body: &[u8], tally: &mut Tally) -> Result<Vec<u8>, serde_json::Error> {
    let req: Body = serde_json::from_slice(body)?;
    let mut out = Vec::with_capacity(body.len() / 2 + 64);
    out.extend_from_slice(b"{\"results\":[");
    for (i, ev) in req.events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"actions\":[");
        tally.events += 1;
        match ev.kind.as_ref() {
            "open" => {
                tally.open += 1;
                out.extend_from_slice(b"{\"type\":\"accept\"}");
                if let Some(p) = &ev.params {
                    if let Some(Value::String(topic)) = p.get("topic") {
                        out.extend_from_slice(b",{\"type\":\"subscribe\",\"topic\":");
                        write_str(&mut out, topic);
                        out.extend_from_slice(b",\"deliver\":\"lambda\"}");
                    }
                    if let Some(ms) = param_u64(p, "timer_ms") {
                        out.extend_from_slice(
                            format!(",{{\"type\":\"timer\",\"name\":\"t\",\"every_ms\":{ms}}}")
                                .as_bytes(),
                        );
                    }
                }
            }
            "message" => {
                tally.message += 1;
                if let Some(d) = ev.data {
                    push(&mut out, &mut true, d);
                }
            }
            "batch" => {
                tally.batch += 1;
                let mut first = true;
                for m in ev.messages.iter().flatten() {
                    tally.batch_messages += 1;
                    push(&mut out, &mut first, m.data);
                }
            }
            "timer" => tally.timer += 1,
            "client_message" => tally.client_message += 1,
            "close" => tally.close += 1,
            _ => tally.other += 1,
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

async fn handle(
    counts: Arc<Counts>,
    started: Instant,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/stats" {
        let body = serde_json::to_vec(&counts.json(started)).unwrap_or_default();
        return Ok(respond(StatusCode::OK, "application/json", body));
    }
    if req.method() != Method::POST {
        return Ok(respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            b"POST lambda events, or GET /stats\n".to_vec(),
        ));
    }
    counts.requests.fetch_add(1, Ordering::Relaxed);
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            counts.bad_requests.fetch_add(1, Ordering::Relaxed);
            return Ok(respond(
                StatusCode::BAD_REQUEST,
                "text/plain",
                b"body unreadable or too large\n".to_vec(),
            ));
        }
    };
    let mut tally = Tally::default();
    match answer(&body, &mut tally) {
        Ok(out) => {
            counts.add(&tally);
            Ok(respond(StatusCode::OK, "application/json", out))
        }
        Err(e) => {
            counts.bad_requests.fetch_add(1, Ordering::Relaxed);
            Ok(respond(
                StatusCode::BAD_REQUEST,
                "text/plain",
                format!("not a lambda request: {e}\n").into_bytes(),
            ))
        }
    }
}

/// This process's user + system CPU time in microseconds (all threads).
fn self_cpu_us() -> u64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

async fn serve(args: Args) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    // bench/lib_lambda.sh waits for this line.
    println!("mini_lambda listening on http://{addr}/");
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("mini_lambda: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let counts = counts.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(counts.clone(), started, req));
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn main() {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        eprintln!("mini_lambda: --listen must be a loopback address");
        std::process::exit(2);
    }
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all();
    if args.threads > 0 {
        b.worker_threads(args.threads);
    }
    let res = b
        .build()
        .context("runtime")
        .and_then(|rt| rt.block_on(serve(args)));
    if let Err(e) = res {
        eprintln!("mini_lambda: {e:#}");
        std::process::exit(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &str) -> (Value, Tally) {
        let mut t = Tally::default();
        let out = answer(body.as_bytes(), &mut t).expect("valid request");
        (serde_json::from_slice(&out).expect("valid JSON answer"), t)
    }

    #[test]
    fn open_accepts_subscribes_and_sets_a_timer() {
        let (v, t) = run(r#"{"v":1,"app":"bench","events":[
              {"type":"open","stream":{"id":"s1","state":null},"transport":"ws",
               "params":{"topic":"bench/3"},"headers":{},"remote_addr":"127.0.0.2"},
              {"type":"open","stream":{"id":"s2","state":null},"transport":"ws",
               "params":{"topic":"idle/7","timer_ms":1000},"headers":{},"remote_addr":"127.0.0.2"},
              {"type":"open","stream":{"id":"s3","state":null},"transport":"sse",
               "params":{"timer_ms":"250"},"headers":{},"remote_addr":"127.0.0.2"}]}"#);
        assert_eq!(
            v,
            json!({"results":[
                {"actions":[{"type":"accept"},{"type":"subscribe","topic":"bench/3","deliver":"lambda"}]},
                {"actions":[{"type":"accept"},{"type":"subscribe","topic":"idle/7","deliver":"lambda"},
                            {"type":"timer","name":"t","every_ms":1000}]},
                {"actions":[{"type":"accept"},{"type":"timer","name":"t","every_ms":250}]}
            ]})
        );
        assert_eq!((t.events, t.open), (3, 3));
    }

    #[test]
    fn messages_and_batches_push_data_unchanged() {
        let (v, t) = run(r#"{"v":1,"app":"bench","events":[
              {"type":"message","stream":{"id":"s1","state":null},"topic":"bench/0","id":"5",
               "data":{"t":1700000000123456789,"seq":5,"pad":"x\"y"}},
              {"type":"batch","stream":{"id":"s2","state":{"k":1}},"messages":[
                {"topic":"bench/0","id":"6","data":{"t":1,"seq":6}},
                {"topic":"bench/0","id":"7","data":null}]},
              {"type":"message","stream":{"id":"s3","state":null},"topic":"a","id":"1","data":null},
              {"type":"timer","stream":{"id":"s1","state":null},"name":"t","fired_at_ms":1},
              {"type":"close","stream":{"id":"s1","state":null},"reason":"client"},
              {"type":"client_message","stream":{"id":"s1","state":null},"data":[1]},
              {"type":"something_new","stream":{"id":"s1","state":null}}]}"#);
        assert_eq!(
            v,
            json!({"results":[
                {"actions":[{"type":"push","data":{"t":1700000000123456789u64,"seq":5,"pad":"x\"y"}}]},
                {"actions":[{"type":"push","data":{"t":1,"seq":6}},{"type":"push","data":null}]},
                {"actions":[{"type":"push","data":null}]},
                {"actions":[]},
                {"actions":[]},
                {"actions":[]},
                {"actions":[]}
            ]})
        );
        assert_eq!(
            t,
            Tally {
                events: 7,
                open: 0,
                message: 2,
                batch: 1,
                batch_messages: 2,
                client_message: 1,
                timer: 1,
                close: 1,
                other: 1,
            }
        );
    }

    #[test]
    fn data_bytes_are_passed_through() {
        let body = r#"{"v":1,"app":"b","events":[{"type":"message","stream":{"id":"s","state":null},"topic":"a","id":"1","data":{"t":12,"seq":3}}]}"#;
        let mut t = Tally::default();
        let out = answer(body.as_bytes(), &mut t).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"results":[{"actions":[{"type":"push","data":{"t":12,"seq":3}}]}]}"#
        );
    }

    #[test]
    fn bad_bodies_are_errors() {
        let mut t = Tally::default();
        for body in [
            "",
            "{",
            "[]",
            r#"{"v":1}"#,
            r#"{"events":[{"stream":{}}]}"#,
            r#"{"events":[{"type":3}]}"#,
            r#"{"events":[{"type":"batch","messages":[{"topic":"a"}]}]}"#,
        ] {
            assert!(answer(body.as_bytes(), &mut t).is_err(), "{body:?}");
        }
        let (v, _) = run(r#"{"events":[]}"#);
        assert_eq!(v, json!({"results":[]}));
        let (v, _) = run(
            r#"{"events":[{"type":"open","params":{"topic":5,"timer_ms":"soon"}},{"type":"open"}]}"#,
        );
        assert_eq!(
            v,
            json!({"results":[{"actions":[{"type":"accept"}]},{"actions":[{"type":"accept"}]}]})
        );
    }

    #[test]
    fn timer_ms_params() {
        let p: Map<String, Value> =
            serde_json::from_str(r#"{"a":1000,"b":" 250 ","c":-1,"d":1.5,"e":null}"#).unwrap();
        assert_eq!(param_u64(&p, "a"), Some(1000));
        assert_eq!(param_u64(&p, "b"), Some(250));
        assert_eq!(param_u64(&p, "c"), None);
        assert_eq!(param_u64(&p, "d"), None);
        assert_eq!(param_u64(&p, "e"), None);
        assert_eq!(param_u64(&p, "zz"), None);
    }
}

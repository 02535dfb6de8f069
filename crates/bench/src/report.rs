//! A run's figures as the JSON report and as the readable table.

use serde_json::{json, Value};

use crate::common::round;
use crate::publish;
use crate::server::Server;
use crate::sub::{Connected, GroupResult};

use crate::args::Args;

pub(crate) struct Figures {
    pub(crate) started: u64,
    pub(crate) nofile: u64,
    pub(crate) load_start: Option<[f64; 3]>,
    pub(crate) load_end: Option<[f64; 3]>,
    pub(crate) procs: usize,
    pub(crate) connected: Connected,
    pub(crate) connect_secs: f64,
    pub(crate) rss_before: Option<u64>,
    pub(crate) rss_idle: Option<u64>,
    pub(crate) rss_end: Option<u64>,
    pub(crate) server_cpu_us: Option<u64>,
    pub(crate) origin_cpu_us: Option<u64>,
    pub(crate) self_cpu_us: u64,
    pub(crate) missing_results: usize,
    pub(crate) pubr: Option<publish::PubResult>,
    pub(crate) g: GroupResult,
}

pub(crate) fn report(args: &Args, f: &Figures) -> Value {
    let dur = args.duration;
    let g = &f.g;
    let h = g.histogram();
    let ok = f.connected.ok;
    let per_conn = |after: Option<u64>| match (f.rss_before, after) {
        (Some(b), Some(a)) if ok > 0 => Some(round((a as f64 - b as f64) / ok as f64, 3)),
        _ => None,
    };
    let deliveries = g.arrivals_in_window;
    let per_delivery =
        |cpu: u64| (deliveries > 0).then(|| round(cpu as f64 / deliveries as f64, 3));
    let loadgen_cpu = f.self_cpu_us + g.cpu_us.unwrap_or(0);
    let mut latency = json!(null);
    if !h.is_empty() {
        latency = json!({
            "count": h.len(),
            "p50": h.value_at_quantile(0.50),
            "p90": h.value_at_quantile(0.90),
            "p99": h.value_at_quantile(0.99),
            "p999": h.value_at_quantile(0.999),
            "max": h.max(),
            "mean": round(h.mean(), 1),
        });
    }
    let pid = match args.server_pid.as_ref().map(|p| &p.0[..]) {
        Some([one]) => json!(one),
        Some(many) => json!(many),
        None => json!(null),
    };
    let mut server = json!({
        "pid": pid,
        "rss_before_kib": f.rss_before,
        "rss_idle_kib": f.rss_idle,
        "rss_end_kib": f.rss_end,
        "rss_per_conn_kib": per_conn(f.rss_idle),
        "rss_per_conn_end_kib": per_conn(f.rss_end),
        "cpu_us": f.server_cpu_us,
        "cpu_percent": f.server_cpu_us.map(|c| round(c as f64 / (dur * 1e4), 1)),
        "cpu_us_per_delivery": f.server_cpu_us.and_then(per_delivery),
    });
    if args.server != Server::Switchboard {
        server["kind"] = json!(args.server.name());
    }
    if let Some(o) = &args.origin_pid {
        server["origin"] = json!({
            "pid": o.0,
            "cpu_us": f.origin_cpu_us,
            "cpu_percent": f.origin_cpu_us.map(|c| round(c as f64 / (dur * 1e4), 1)),
            "cpu_us_per_delivery": f.origin_cpu_us.and_then(per_delivery),
        });
    }
    let loadgen = json!({
        "processes": 1 + f.procs,
        "threads_per_process": args.threads,
        "cpu_us": loadgen_cpu,
        "cpu_percent": round(loadgen_cpu as f64 / (dur * 1e4), 1),
        "cpu_us_per_delivery": per_delivery(loadgen_cpu),
        "nofile_limit": f.nofile,
    });
    let mut out = json!({
        "tool": "switchboard-bench",
        "version": env!("CARGO_PKG_VERSION"),
        "label": args.report.label,
        "started_unix_ms": f.started / 1_000_000,
        "url": args.url,
        "transport": args.transport,
        "app": args.app,
        "mode": if args.idle { "idle" } else { "publish" },
        "subscribers": args.subscribers,
        "topics": args.topics,
        "duration_s": dur,
        "loadavg_start": f.load_start,
        "loadavg_end": f.load_end,
        "connect": {
            "ok": ok,
            "failed": f.connected.failed,
            "first_error": f.connected.first_error,
            "seconds": round(f.connect_secs, 2),
        },
        "server": server,
        "loadgen": loadgen,
        "connections": {
            "alive_at_end": g.alive,
            "closed": g.closed,
            "streams_closed_by_server": g.streams_closed,
            "first_close": g.first_close,
            "pings": g.pings,
            "missing_results": f.missing_results,
        },
    });
    out["summary"] = json!({
        "connected": ok,
        "rss_per_conn_kib": per_conn(f.rss_idle),
        "server_cpu_percent": out["server"]["cpu_percent"].clone(),
        "loadgen_cpu_percent": out["loadgen"]["cpu_percent"].clone(),
    });
    if args.idle {
        return out;
    }
    let empty = publish::PubResult::default();
    let p = f.pubr.as_ref().unwrap_or(&empty);
    let expected: u64 = g
        .subs_by_topic
        .iter()
        .zip(&p.in_window_by_topic)
        .map(|(s, m)| s * m)
        .sum();
    let received = g.received_in_window;
    let lost = expected.saturating_sub(received);
    let offered = ok as f64 * args.rate / args.topics as f64;
    let per_sec = deliveries as f64 / dur;
    let published_in_window: u64 = p.in_window_by_topic.iter().sum();
    let p99 = h.value_at_quantile(0.99);
    let lagging = per_sec < 0.95 * offered
        || (expected > 0 && lost as f64 > 0.001 * expected as f64)
        || p99 > 1_000_000
        || g.streams_closed > 0
        || h.is_empty();
    let rtt = p.rtt_us.as_ref().filter(|h| !h.is_empty()).map(|h| {
        json!({
            "p50": h.value_at_quantile(0.5),
            "p99": h.value_at_quantile(0.99),
            "max": h.max(),
        })
    });
    out["publish"] = json!({
        "rate_offered": args.rate,
        "rate_achieved": round(published_in_window as f64 / dur, 1),
        "payload_bytes": args.payload,
        "warmup_s": args.warmup,
        "messages": p.published,
        "messages_in_window": published_in_window,
        "requests": p.requests,
        "errors": p.errors,
        "failed_messages": p.failed,
        "first_error": p.first_error,
        "rtt_us": rtt,
        "ran": f.pubr.is_some(),
    });
    if let Some(u) = &args.publish_url {
        out["publish"]["url"] = json!(u);
    }
    out["deliveries"] = json!({
        "offered_per_sec": round(offered, 1),
        "per_sec": round(per_sec, 1),
        "bytes_per_sec": round(g.bytes_in_window as f64 / dur, 0),
        "expected": expected,
        "received": received,
        "lost": lost,
        "lost_percent": if expected > 0 { round(100.0 * lost as f64 / expected as f64, 4) } else { 0.0 },
        "duplicates": g.dups,
        "seq_gaps": g.seq_gaps,
        "unparsed": g.unparsed,
        "other_frames": g.other,
        "first_other_frame": g.first_other,
        "events_total": g.events,
    });
    out["latency_us"] = latency;
    out["verdict"] = json!(if lagging { "lagging" } else { "ok" });
    let q = |x: f64| (!h.is_empty()).then(|| h.value_at_quantile(x));
    let sm = &mut out["summary"];
    sm["rate"] = json!(args.rate);
    sm["deliveries_per_sec"] = json!(round(per_sec, 1));
    sm["offered_deliveries_per_sec"] = json!(round(offered, 1));
    sm["server_cpu_us_per_delivery"] = json!(f.server_cpu_us.and_then(per_delivery));
    sm["loadgen_cpu_us_per_delivery"] = json!(per_delivery(loadgen_cpu));
    sm["p50_us"] = json!(q(0.5));
    sm["p99_us"] = json!(q(0.99));
    sm["p999_us"] = json!(q(0.999));
    sm["max_us"] = json!((!h.is_empty()).then(|| h.max()));
    sm["lost"] = json!(lost);
    sm["streams_closed"] = json!(g.streams_closed);
    sm["verdict"] = json!(if lagging { "lagging" } else { "ok" });
    out
}

/// The readable form of a report.
pub(crate) fn table(r: &Value) -> String {
    fn v(x: &Value) -> String {
        match x {
            Value::Null => "-".into(),
            Value::String(s) => s.clone(),
            Value::Number(n) => {
                if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                    format!("{f:.2}")
                } else {
                    n.to_string()
                }
            }
            other => other.to_string(),
        }
    }
    fn ms(x: &Value) -> String {
        x.as_u64()
            .map_or("-".into(), |us| format!("{:.2} ms", us as f64 / 1000.0))
    }
    fn load(x: &Value) -> String {
        x.as_array()
            .map(|a| a.iter().map(v).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| "-".into())
    }
    let mut s = String::new();
    let mut row = |k: &str, val: String| s.push_str(&format!("  {k:<30} {val}\n"));
    row(
        "run",
        format!(
            "{} {} x{} over {} topic(s), {} s{}",
            v(&r["mode"]),
            v(&r["transport"]),
            v(&r["subscribers"]),
            v(&r["topics"]),
            v(&r["duration_s"]),
            crate::common::label_suffix(&r["label"])
        ),
    );
    row(
        "load average start / end",
        format!(
            "{} / {}",
            load(&r["loadavg_start"]),
            load(&r["loadavg_end"])
        ),
    );
    let c = &r["connect"];
    row(
        "connected",
        format!(
            "{} ok, {} failed in {} s",
            v(&c["ok"]),
            v(&c["failed"]),
            v(&c["seconds"])
        ),
    );
    if !c["first_error"].is_null() {
        row("  first error", v(&c["first_error"]));
    }
    let cn = &r["connections"];
    row(
        "alive / closed / streams closed",
        format!(
            "{} / {} / {}{}",
            v(&cn["alive_at_end"]),
            v(&cn["closed"]),
            v(&cn["streams_closed_by_server"]),
            crate::common::paren_suffix(&cn["first_close"])
        ),
    );
    let sv = &r["server"];
    row(
        "server RSS before/idle/end",
        format!(
            "{} / {} / {} KiB",
            v(&sv["rss_before_kib"]),
            v(&sv["rss_idle_kib"]),
            v(&sv["rss_end_kib"])
        ),
    );
    row(
        "server RSS per connection",
        format!(
            "{} KiB idle, {} KiB at end",
            v(&sv["rss_per_conn_kib"]),
            v(&sv["rss_per_conn_end_kib"])
        ),
    );
    if let Some(kind) = sv["kind"].as_str() {
        let pids = match &sv["pid"] {
            Value::Array(a) => a.len(),
            Value::Null => 0,
            _ => 1,
        };
        row("server", format!("{kind} ({pids} process(es) measured)"));
    }
    row(
        "server CPU",
        format!("{} % of a core", v(&sv["cpu_percent"])),
    );
    if let Some(o) = sv.get("origin") {
        row(
            "origin CPU (not in server's)",
            format!(
                "{} % of a core, {} µs per delivery",
                v(&o["cpu_percent"]),
                v(&o["cpu_us_per_delivery"])
            ),
        );
    }
    let lg = &r["loadgen"];
    row(
        "loadgen CPU",
        format!(
            "{} % of a core ({} process(es))",
            v(&lg["cpu_percent"]),
            v(&lg["processes"])
        ),
    );
    if let Some(p) = r.get("publish") {
        let d = &r["deliveries"];
        row(
            "publish rate offered/achieved",
            format!(
                "{} / {} msg/s ({} requests, {} errors)",
                v(&p["rate_offered"]),
                v(&p["rate_achieved"]),
                v(&p["requests"]),
                v(&p["errors"])
            ),
        );
        if !p["first_error"].is_null() {
            row("  first error", v(&p["first_error"]));
        }
        row(
            "publish RTT p50/p99/max",
            format!(
                "{} / {} / {}",
                ms(&p["rtt_us"]["p50"]),
                ms(&p["rtt_us"]["p99"]),
                ms(&p["rtt_us"]["max"])
            ),
        );
        row("deliveries/s offered", v(&d["offered_per_sec"]));
        row("deliveries/s", v(&d["per_sec"]));
        row(
            "expected / received / lost",
            format!(
                "{} / {} / {} ({} %)",
                v(&d["expected"]),
                v(&d["received"]),
                v(&d["lost"]),
                v(&d["lost_percent"])
            ),
        );
        row(
            "duplicates / seq gaps",
            format!("{} / {}", v(&d["duplicates"]), v(&d["seq_gaps"])),
        );
        if !d["first_other_frame"].is_null() {
            row(
                "other frames",
                format!(
                    "{} (first: {})",
                    v(&d["other_frames"]),
                    v(&d["first_other_frame"])
                ),
            );
        }
        row(
            "server CPU per delivery",
            format!("{} µs", v(&sv["cpu_us_per_delivery"])),
        );
        row(
            "loadgen CPU per delivery",
            format!("{} µs", v(&lg["cpu_us_per_delivery"])),
        );
        let l = &r["latency_us"];
        row(
            "latency p50 / p90 / p99",
            format!("{} / {} / {}", ms(&l["p50"]), ms(&l["p90"]), ms(&l["p99"])),
        );
        row(
            "latency p99.9 / max",
            format!("{} / {}", ms(&l["p999"]), ms(&l["max"])),
        );
        row("verdict", v(&r["verdict"]));
    }
    s
}

//! Every metric in one place: per-app counters (the capacity cost of each
//! capability) and node-wide ones, rendered as Prometheus text and as the
//! admin API's JSON. Hand-rolled atomics, because both views must read the
//! same numbers and labels are only ever app names (a bounded set).

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde_json::{json, Map, Value};

pub use crate::ops::supervise::TaskKind;

#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default, Debug)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn set(&self, n: i64) {
        self.0.store(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

macro_rules! stats {
    ($(#[$m:meta])* $name:ident { $($field:ident : $ty:ident = $help:literal,)* }) => {
        $(#[$m])*
        #[derive(Default, Debug)]
        pub struct $name { $(pub $field: $ty,)* }
        impl $name {
            /// (field name, kind, help, value) for each metric.
            pub fn each(&self) -> Vec<(&'static str, &'static str, &'static str, i64)> {
                vec![$((stringify!($field), kind_of::<$ty>(), $help, self.$field.get() as i64),)*]
            }
        }
    };
}

trait Kind {
    const KIND: &'static str;
}
impl Kind for Counter {
    const KIND: &'static str = "counter";
}
impl Kind for Gauge {
    const KIND: &'static str = "gauge";
}
fn kind_of<T: Kind>() -> &'static str {
    T::KIND
}

stats!(
    /// What one app costs: streams, lambda work, deliveries and drops by cause.
    AppStats {
        streams: Gauge = "Open streams",
        streams_opened: Counter = "Streams accepted",
        streams_rejected: Counter = "Opens rejected (by the lambda, unknown app or failure)",
        subscriptions: Gauge = "Live topic subscriptions of this app's streams",
        lambda_calls: Counter = "HTTP requests to the lambda, retries included",
        lambda_queue: Gauge = "Events waiting in the dispatcher for a lambda request",
        lambda_events: Counter = "Events sent to the lambda, retries included",
        lambda_micros: Counter = "Microseconds spent waiting for lambda answers",
        lambda_failures: Counter = "Failed lambda requests (status, timeout, connect, bad answer)",
        lambda_retries: Counter = "Lambda requests retried",
        circuit_open: Gauge = "1 while the app's lambda circuit breaker is open or half-open",
        circuit_rejections: Counter = "Lambda requests refused at once by the open circuit",
        lambda_gave_up: Counter = "Lambda batches that failed after every retry (on_failure applied)",
        events_in: Counter = "Events that entered this app's streams (client frames, topic messages)",
        events_out: Counter = "Event frames sent to clients",
        pushes: Counter = "Push actions applied",
        publishes: Counter = "Publish actions applied",
        direct_deliveries: Counter = "Topic messages delivered without a lambda call",
        timers_set: Counter = "Timers armed by `timer` actions",
        timers_fired: Counter = "Timer ticks sent to the lambda",
        timers_skipped: Counter = "Timer ticks skipped because the previous one was in flight",
        rate_limit_drops: Counter = "Topic messages dropped by a subscription's rate limit",
        dedup_drops: Counter = "Topic messages dropped by a subscription's dedup window",
        batches: Counter = "`batch` events sent to the lambda",
        sink_records: Counter = "Records appended to sinks by `buffer` actions",
        invalid_actions: Counter = "Lambda actions skipped as unknown or invalid",
        publish_hops_exceeded: Counter = "Publish actions dropped: the message would pass limits.max_publish_hops (a publish loop)",
        drops_slow_consumer: Counter = "Topic messages dropped for a client that fell behind (drop_oldest)",
        slow_consumer_closes: Counter = "Streams closed because their client fell behind (close)",
        drops_lambda_failure: Counter = "Events dropped after a lambda failure",
        lambda_events_shed: Counter = "Queued events of connections that are gone, shed when the dispatcher queue was full",
        lambda_overloaded: Counter = "Events refused at once because the dispatcher queue was full",
    }
);

stats!(
    /// Node-wide figures.
    NodeStats {
        connections: Gauge = "Open client connections (WebSocket and SSE)",
        ws_connections_total: Counter = "WebSocket connections accepted",
        sse_connections_total: Counter = "SSE connections accepted",
        bad_frames: Counter = "Malformed client frames answered with an error",
        published: Counter = "Messages published through the publish API",
        publish_errors: Counter = "Publish API requests refused",
        bytes_out: Counter = "Bytes of frames and SSE chunks written to clients",
        reads_paused: Counter = "Times a WebSocket stopped being read: its queued send bytes or lambda events were at their bound",
        history_bytes: Gauge = "Bytes of topic history the embedded broker holds over all topics, bounded by history.max_total_bytes (0 with a shared broker)",
    }
);

stats!(
    /// One sink's records: in, written, dropped (past its bounds), failed flushes.
    SinkStats {
        records_in: Counter = "Records appended to the sink",
        records_written: Counter = "Records written to the sink's target",
        records_dropped: Counter = "Records dropped: queue or buffer full while the target was down, or lost at shutdown",
        flush_failures: Counter = "Failed flushes (each retried later)",
    }
);

stats!(
    /// The HTTP edge: TCP connections, refusals (`refused_*`: one
    /// `switchboard_connections_refused{reason=..}` family), failed accepts, timeouts.
    EdgeStats {
        tcp_connections: Gauge = "Open TCP connections of every kind (what max_connections caps)",
        accept_errors: Counter = "Failed accepts (out of descriptors and the like); each backs off",
        header_timeouts: Counter = "Connections closed for a TLS handshake or request head not whole within header_timeout, or idle past idle_timeout",
        body_timeouts: Counter = "Requests answered 408: body not whole within body_timeout",
        forbidden_origins: Counter = "Requests refused 403 for a foreign Origin",
        refused_max_connections: Counter = "",
        refused_max_connections_per_ip: Counter = "",
        refused_proxy_header: Counter = "",
        refused_tls_handshake: Counter = "",
    }
);

/// [`EdgeStats`] as Prometheus text: `switchboard_<name>`, and the
/// `refused_*` rows as one family labelled by reason.
pub fn render_edge(out: &mut String, edge: &EdgeStats) {
    let family = "switchboard_connections_refused";
    let mut header = false;
    for (name, kind, help, v) in edge.each() {
        match name.strip_prefix("refused_") {
            Some(reason) => {
                if !header {
                    header = true;
                    let _ = writeln!(out, "# HELP {family} Connections closed at once (WebSocket/SSE requests refused 429 behind a trusted proxy), by reason\n# TYPE {family} counter");
                }
                let _ = writeln!(out, "{family}{{reason=\"{reason}\"}} {v}");
            }
            None => {
                let _ = writeln!(out, "# HELP switchboard_{name} {help}\n# TYPE switchboard_{name} {kind}\nswitchboard_{name} {v}");
            }
        }
    }
}

/// `switchboard_task_restarts{task=..}`: panics of the node's shared tasks,
/// each followed by a restart (`ops::supervise`). Process-wide, because
/// brokers and timers run below any one gateway; labels are the task kinds.
pub struct TaskRestarts([Counter; TaskKind::ALL.len()]);

pub static TASK_RESTARTS: TaskRestarts =
    TaskRestarts([const { Counter::new() }; TaskKind::ALL.len()]);

impl TaskRestarts {
    pub fn inc(&self, kind: TaskKind) {
        self.0[kind as usize].inc();
    }

    pub fn get(&self, kind: TaskKind) -> u64 {
        self.0[kind as usize].get()
    }

    /// Renders the family, one row per task kind.
    pub fn render(&self, out: &mut String) {
        let family = "switchboard_task_restarts";
        let _ = writeln!(out, "# HELP {family} Shared tasks (timer shards, dispatchers, sinks, brokers, sweepers) restarted after a panic, by task\n# TYPE {family} counter");
        for kind in TaskKind::ALL {
            let _ = writeln!(
                out,
                "{family}{{task=\"{}\"}} {}",
                kind.as_str(),
                self.get(kind)
            );
        }
    }
}

type Rows = Vec<(&'static str, &'static str, &'static str, i64)>;

/// Renders Prometheus text exposition.
pub fn render_prometheus(
    node: &NodeStats,
    apps: &[(&str, &AppStats)],
    sinks: &[(&str, &SinkStats)],
) -> String {
    let mut out = String::with_capacity(4096);
    for (name, kind, help, v) in node.each() {
        let _ = writeln!(out, "# HELP switchboard_{name} {help}\n# TYPE switchboard_{name} {kind}\nswitchboard_{name} {v}");
    }
    let apps: Vec<(&str, Rows)> = apps.iter().map(|(n, s)| (*n, s.each())).collect();
    labeled(&mut out, "app", &apps);
    let sinks: Vec<(&str, Rows)> = sinks.iter().map(|(n, s)| (*n, s.each())).collect();
    labeled(&mut out, "sink", &sinks);
    out
}

/// `switchboard_<label>_<name>{<label>="<value>"} v` for each labeled set of rows.
fn labeled(out: &mut String, label: &str, sets: &[(&str, Rows)]) {
    let Some((_, first)) = sets.first() else {
        return;
    };
    for (i, (name, kind, help, _)) in first.iter().enumerate() {
        let _ = writeln!(
            out,
            "# HELP switchboard_{label}_{name} {help}\n# TYPE switchboard_{label}_{name} {kind}"
        );
        for (value, rows) in sets {
            let v = rows[i].3;
            let _ = writeln!(out, "switchboard_{label}_{name}{{{label}=\"{value}\"}} {v}");
        }
    }
}

/// One app's figures as JSON, for `GET /v1/admin/apps`.
pub fn app_json(stats: &AppStats) -> Value {
    let mut m = Map::new();
    for (name, _, _, v) in stats.each() {
        m.insert(name.into(), json!(v));
    }
    let calls = stats.lambda_calls.get();
    let avg = if calls == 0 {
        0.0
    } else {
        stats.lambda_micros.get() as f64 / calls as f64 / 1000.0
    };
    m.insert("lambda_latency_avg_ms".into(), json!(avg));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_each_app() {
        let node = NodeStats::default();
        node.published.add(3);
        let a = AppStats::default();
        a.pushes.add(2);
        let b = AppStats::default();
        let s = SinkStats::default();
        s.records_dropped.add(4);
        let text = render_prometheus(&node, &[("a", &a), ("b", &b)], &[("audit", &s)]);
        assert!(text.contains("switchboard_sink_records_dropped{sink=\"audit\"} 4\n"));
        assert!(text.contains("switchboard_published 3\n"));
        assert!(text.contains("switchboard_app_pushes{app=\"a\"} 2\n"));
        assert!(text.contains("switchboard_app_pushes{app=\"b\"} 0\n"));
        assert!(text.contains("# TYPE switchboard_app_streams gauge"));
        assert_eq!(app_json(&a)["pushes"], 2);
    }

    #[test]
    fn edge_refusals_are_one_family() {
        let e = EdgeStats::default();
        e.refused_max_connections_per_ip.add(2);
        e.accept_errors.inc();
        let mut text = String::new();
        render_edge(&mut text, &e);
        assert!(
            text.contains("switchboard_connections_refused{reason=\"max_connections_per_ip\"} 2\n")
        );
        assert!(text.contains("switchboard_connections_refused{reason=\"proxy_header\"} 0\n"));
        assert_eq!(
            text.matches("# TYPE switchboard_connections_refused counter")
                .count(),
            1
        );
        assert!(text.contains("switchboard_accept_errors 1\n"));
    }
}

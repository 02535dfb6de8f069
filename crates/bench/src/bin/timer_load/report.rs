//! Samples of the gateway's and lambda's counters, and the readable table
//! of a report.

use super::*;

/// One sample of the gateway's and the lambda's counters.
#[derive(Debug, Default, Clone)]
pub(super) struct Sample {
    pub(super) at: Option<Instant>,
    pub(super) metrics: Option<Vec<(&'static str, u64)>>,
    pub(super) server_cpu_us: Option<u64>,
    pub(super) lambda_cpu_us: Option<u64>,
    pub(super) lambda_timers: Option<u64>,
    pub(super) lambda_events: Option<u64>,
    pub(super) self_cpu_us: u64,
}

pub(super) const METRICS: [&str; 7] = [
    "timers_fired",
    "timers_skipped",
    "timers_set",
    "lambda_events",
    "lambda_calls",
    "lambda_failures",
    "events_out",
];

pub(super) async fn sample(args: &Args, gw: &Target, lambda: Option<&Target>) -> Sample {
    let metrics = match http_get(gw, "/metrics").await {
        Ok(body) => {
            let text = String::from_utf8_lossy(&body);
            Some(
                METRICS
                    .iter()
                    .filter_map(|m| app_metric(&text, m, &args.app).map(|v| (*m, v)))
                    .collect(),
            )
        }
        Err(e) => {
            eprintln!("timer_load: {e:#}");
            None
        }
    };
    let stats = match lambda {
        Some(l) => match http_get(l, "/stats").await {
            Ok(b) => serde_json::from_slice::<Value>(&b).ok(),
            Err(e) => {
                eprintln!("timer_load: lambda {e:#}");
                None
            }
        },
        None => None,
    };
    let stat = |k: &str| stats.as_ref().and_then(|s| s[k].as_u64());
    Sample {
        at: Some(Instant::now()),
        metrics,
        server_cpu_us: args.server_pid.and_then(procfs::cpu_us),
        lambda_cpu_us: args
            .lambda_pid
            .and_then(procfs::cpu_us)
            .or_else(|| stat("cpu_us")),
        lambda_timers: stat("timer"),
        lambda_events: stat("events"),
        self_cpu_us: procfs::self_cpu_us(),
    }
}

pub(super) fn metric_delta(a: &Sample, b: &Sample, name: &str) -> Option<u64> {
    let get = |s: &Sample| {
        s.metrics
            .as_ref()?
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    };
    Some(get(b)?.saturating_sub(get(a)?))
}

pub(super) fn delta(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(b?.saturating_sub(a?))
}

pub(super) fn table(r: &Value) -> String {
    pub(super) fn v(x: &Value) -> String {
        match x {
            Value::Null => "-".into(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
    let mut s = String::new();
    let mut row = |k: &str, val: String| s.push_str(&format!("  {k:<32} {val}\n"));
    let (o, w, sv, l, st) = (
        &r["open"],
        &r["window"],
        &r["server"],
        &r["lambda"],
        &r["streams"],
    );
    row(
        "streams",
        format!(
            "{} x {} on app {}, timer every {} ms{}",
            v(&r["connections"]),
            v(&r["streams_per_connection"]),
            v(&r["app"]),
            v(&r["timer_ms"]),
            common::label_suffix(&r["label"])
        ),
    );
    row(
        "opened / rejected / wanted",
        format!(
            "{} / {} / {} in {} s ({} opens/s)",
            v(&o["streams_opened"]),
            v(&o["rejected"]),
            v(&r["streams_wanted"]),
            v(&o["seconds"]),
            v(&o["opens_per_sec"])
        ),
    );
    if !o["first_error"].is_null() {
        row("  first error", v(&o["first_error"]));
    }
    row(
        "timers fired/s (expected)",
        format!(
            "{} ({}) over {} s; {} skipped",
            v(&w["timers_fired_per_sec"]),
            v(&w["expected_per_sec"]),
            v(&w["seconds"]),
            v(&w["timers_skipped"])
        ),
    );
    row(
        "lambda timer events/s",
        format!(
            "{} ({} events per request)",
            v(&w["lambda_timer_events_per_sec"]),
            v(&w["lambda_events_per_call"])
        ),
    );
    row(
        "gateway CPU",
        format!(
            "{} % of a core, {} µs per timer",
            v(&sv["cpu_percent"]),
            v(&sv["cpu_us_per_timer"])
        ),
    );
    row(
        "gateway RSS before/open/end",
        format!(
            "{} / {} / {} KiB",
            v(&sv["rss_before_kib"]),
            v(&sv["rss_open_kib"]),
            v(&sv["rss_end_kib"])
        ),
    );
    row(
        "gateway RSS per stream",
        format!(
            "{} KiB open, {} KiB at end",
            v(&sv["rss_per_stream_kib"]),
            v(&sv["rss_per_stream_end_kib"])
        ),
    );
    row(
        "lambda CPU",
        format!(
            "{} % of a core, {} µs per timer",
            v(&l["cpu_percent"]),
            v(&l["cpu_us_per_timer"])
        ),
    );
    row(
        "loadgen CPU",
        format!("{} % of a core", v(&r["loadgen"]["cpu_percent"])),
    );
    row(
        "closed: connections / streams",
        format!(
            "{} / {}{}",
            v(&st["connections_closed"]),
            v(&st["streams_closed_by_server"]),
            common::paren_suffix(&st["first_close"])
        ),
    );
    if !st["first_other_frame"].is_null() {
        row(
            "other frames",
            format!(
                "{} (first: {})",
                v(&st["other_frames"]),
                v(&st["first_other_frame"])
            ),
        );
    }
    row("verdict", v(&r["summary"]["verdict"]));
    s
}

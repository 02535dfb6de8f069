//! `switchboard dev`: prints each event -> actions exchange as it happens, so
//! a product developer sees what their lambda did. Off the hot path: only
//! when dev mode is on. Credentials in events (cookies, authorization and
//! key headers, tokens) are masked: dev output ends up in terminals,
//! screenshots and CI logs.

use std::fmt::Write;

use serde_json::{Map, Value};
use switchboard_protocol::lambda::{Action, EventResult};

/// Longest JSON shown inline before it is cut.
const MAX_INLINE: usize = 160;

/// What dev output shows instead of a credential.
pub const MASK: &str = "***";

/// A forwarded header whose name contains one of these (without regard to
/// case) is a credential: `authorization`, `proxy-authorization`, `cookie`,
/// `x-api-key`, `x-auth-token`, `x-session-id`...
const SECRET_HEADER_PARTS: [&str; 7] = [
    "authorization",
    "cookie",
    "api-key",
    "apikey",
    "token",
    "secret",
    "session",
];

/// Masks the credentials of an event: secret headers, and a `token`
/// (top level, or in the open's `params`, as `?token=` puts it).
fn mask_secrets(e: &mut Map<String, Value>) {
    let mask = || Value::String(MASK.into());
    if let Some(Value::Object(headers)) = e.get_mut("headers") {
        for (name, value) in headers.iter_mut() {
            let name = name.to_ascii_lowercase();
            if SECRET_HEADER_PARTS.iter().any(|p| name.contains(p)) {
                *value = mask();
            }
        }
    }
    if let Some(Value::Object(params)) = e.get_mut("params") {
        if let Some(t) = params.get_mut("token") {
            *t = mask();
        }
    }
    if let Some(t) = e.get_mut("token") {
        *t = mask();
    }
}

/// One line for an event, e.g. `open stream=ab-1 params={"video":"1234"}`.
pub fn event_line(app: &str, event: &[u8]) -> String {
    let Ok(Value::Object(mut e)) = serde_json::from_slice::<Value>(event) else {
        return format!("[{app}] (unreadable event)");
    };
    let kind = e
        .remove("type")
        .and_then(|t| t.as_str().map(str::to_owned))
        .unwrap_or_default();
    let id = e
        .remove("stream")
        .and_then(|s| s.get("id").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    mask_secrets(&mut e);
    let mut line = format!("[{app}] {kind} stream={id}");
    for (k, v) in e {
        let _ = write!(line, " {k}={}", inline(&v));
    }
    line
}

/// The actions of one result, each on its own line.
pub fn result_lines(result: &EventResult) -> Vec<String> {
    if result.is_empty() {
        return vec!["    (no actions)".into()];
    }
    result
        .iter()
        .map(|a| match a {
            Ok(a) => format!("    -> {}", describe(a)),
            Err(e) => format!("    !! skipped: {e}"),
        })
        .collect()
}

fn describe(a: &Action) -> String {
    let raw = |r: &serde_json::value::RawValue| cut(r.get());
    match a {
        Action::Accept {} => "accept".into(),
        Action::Reject { code, reason } => format!("reject {code} {reason:?}"),
        Action::Subscribe {
            topic,
            deliver,
            rate_limit,
            dedup,
            batch,
        } => {
            let mut s = format!(
                "subscribe {topic} ({})",
                if matches!(deliver, Some(switchboard_protocol::lambda::Deliver::Direct)) {
                    "direct"
                } else {
                    "lambda"
                }
            );
            if let Some(r) = rate_limit {
                let _ = write!(s, " rate_limit={}/s burst {}", r.per_second, r.burst);
            }
            if let Some(d) = dedup {
                let _ = write!(s, " dedup={}ms", d.window_ms);
            }
            if let Some(b) = batch {
                let _ = write!(s, " batch={}/{}ms", b.max_messages, b.max_delay_ms);
            }
            s
        }
        Action::Unsubscribe { topic } => format!("unsubscribe {topic}"),
        Action::Push { data, event } => format!(
            "push{} {}",
            event
                .as_ref()
                .map(|e| format!(" event={e}"))
                .unwrap_or_default(),
            raw(data)
        ),
        Action::Publish { topic, data, .. } => format!("publish {topic} {}", raw(data)),
        Action::SetState { state } => format!("set_state {}", raw(state)),
        Action::Timer {
            name,
            every_ms,
            after_ms,
        } => match (every_ms, after_ms) {
            (Some(e), _) => format!("timer {name} every {e}ms"),
            (_, a) => format!("timer {name} after {}ms", a.unwrap_or_default()),
        },
        Action::CancelTimer { name } => format!("cancel_timer {name}"),
        Action::Buffer { sink, data } => format!("buffer {sink} {}", raw(data)),
        Action::Close { code, reason } => format!("close {code} {reason:?}"),
    }
}

fn inline(v: &Value) -> String {
    cut(&v.to_string())
}

fn cut(s: &str) -> String {
    if s.len() <= MAX_INLINE {
        return s.to_owned();
    }
    let mut end = MAX_INLINE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_readable() {
        let e = br#"{"type":"open","stream":{"id":"n-1","state":null},"params":{"video":"1"}}"#;
        assert_eq!(
            event_line("app", e),
            r#"[app] open stream=n-1 params={"video":"1"}"#
        );
        let r = switchboard_protocol::lambda::parse_response(
            br#"{"results":[{"actions":[{"type":"accept"},{"type":"subscribe","topic":"t","deliver":"direct"},{"type":"bogus"}]}]}"#,
            1,
        )
        .unwrap();
        let lines = result_lines(&r[0]);
        assert_eq!(lines[0], "    -> accept");
        assert_eq!(lines[1], "    -> subscribe t (direct)");
        assert!(lines[2].starts_with("    !! skipped"));
        assert!(cut(&"é".repeat(200)).ends_with("..."));
    }

    #[test]
    fn credentials_are_masked() {
        let e = br#"{"type":"open","stream":{"id":"n-1","state":null},"params":{"video":"1","token":"tok-SECRET"},
            "headers":{"authorization":"Bearer a-SECRET","cookie":"sid=c-SECRET","X-Api-Key":"k-SECRET",
            "proxy-authorization":"Basic p-SECRET","user-agent":"curl"}}"#;
        let line = event_line("app", e);
        assert!(!line.contains("SECRET"), "{line}");
        assert!(line.contains(r#""authorization":"***""#), "{line}");
        assert!(line.contains(r#""cookie":"***""#), "{line}");
        assert!(line.contains(r#""token":"***""#), "{line}");
        assert!(line.contains(r#""video":"1""#), "{line}");
        assert!(line.contains(r#""user-agent":"curl""#), "{line}");
    }
}

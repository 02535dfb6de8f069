//! The gateway under test: Switchboard, or Pushpin or Nchan driven through
//! the same scenarios. What differs is the subscribe request, when a stream
//! counts as subscribed, how frames are classified and how messages are
//! published; everything measured is the same.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Server {
    /// `GET /v1/ws?app=A&topic=T`, `GET /v1/sse/A?topic=T`; JSON event
    /// frames; `POST /v1/publish` (batched).
    Switchboard,
    /// Pushpin in front of bench/grip_origin.py: `GET /sub/T` (WebSocket
    /// over HTTP or an SSE hold); raw messages; `POST /publish/` on the
    /// handler's port (batched items).
    Pushpin,
    /// nginx + Nchan: `GET /sub/T` (`nchan_subscriber websocket
    /// eventsource`); raw messages; `POST /pub/T` (one message per request,
    /// pipelined on a keep-alive connection).
    Nchan,
}

/// When a WebSocket subscriber counts as subscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsReady {
    /// After the 101, once a text frame of type `opened` arrives.
    Opened,
    /// As soon as the 101 arrives.
    Upgrade,
}

impl Server {
    pub fn name(self) -> &'static str {
        match self {
            Server::Switchboard => "switchboard",
            Server::Pushpin => "pushpin",
            Server::Nchan => "nchan",
        }
    }

    /// Every WebSocket text frame and SSE `data:` line is one message as
    /// published (no event envelope, no control frames).
    pub fn raw_messages(self) -> bool {
        !matches!(self, Server::Switchboard)
    }

    pub fn ws_ready(self) -> WsReady {
        match self {
            // Switchboard sends `opened` once the stream is subscribed; the
            // GRIP origin sends one right after its subscribe instruction.
            Server::Switchboard | Server::Pushpin => WsReady::Opened,
            // Nchan subscribes before it answers the upgrade.
            Server::Nchan => WsReady::Upgrade,
        }
    }

    /// The subscribe request's target (path and query) for a topic.
    pub fn subscribe_path(self, ws: bool, app: &str, topic: &str) -> String {
        match (self, ws) {
            (Server::Switchboard, true) => format!("/v1/ws?app={app}&topic={topic}"),
            (Server::Switchboard, false) => format!("/v1/sse/{app}?topic={topic}"),
            (Server::Pushpin | Server::Nchan, _) => format!("/sub/{topic}"),
        }
    }
}

/// Appends `s` to `out` as the inside of a JSON string (no quotes).
pub fn json_escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// One Pushpin publish item carrying `data` (a JSON text) on `channel`, for
/// WebSocket (`ws-message`) and SSE (`http-stream`) subscribers alike.
pub fn pushpin_item(channel: &str, data: &str, out: &mut String) {
    out.push_str("{\"channel\":\"");
    json_escape_into(channel, out);
    out.push_str("\",\"formats\":{\"ws-message\":{\"content\":\"");
    json_escape_into(data, out);
    out.push_str("\"},\"http-stream\":{\"content\":\"data: ");
    json_escape_into(data, out);
    out.push_str("\\n\\n\"}}}");
}

/// A list of pids: `123` or `123,456,789` (the server's processes, summed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pids(pub Vec<u32>);

pub fn parse_pids(s: &str) -> Result<Pids, String> {
    let mut v = Vec::new();
    for part in s.split(',') {
        let p = part.trim();
        if p.is_empty() {
            continue;
        }
        let pid: u32 = p.parse().map_err(|_| format!("{p:?} is not a pid"))?;
        if pid == 0 {
            return Err("pid 0 is not a process".into());
        }
        if !v.contains(&pid) {
            v.push(pid);
        }
    }
    if v.is_empty() {
        return Err("no pid given".into());
    }
    Ok(Pids(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_lists() {
        assert_eq!(parse_pids("42"), Ok(Pids(vec![42])));
        assert_eq!(parse_pids("1, 2,3,2,"), Ok(Pids(vec![1, 2, 3])));
        assert!(parse_pids("").is_err());
        assert!(parse_pids(",").is_err());
        assert!(parse_pids("12,x").is_err());
        assert!(parse_pids("0").is_err());
        assert!(parse_pids("-5").is_err());
        assert!(parse_pids("99999999999").is_err());
    }

    #[test]
    fn subscribe_paths() {
        let s = Server::Switchboard;
        assert_eq!(
            s.subscribe_path(true, "pubsub", "bench/3"),
            "/v1/ws?app=pubsub&topic=bench/3"
        );
        assert_eq!(
            s.subscribe_path(false, "pubsub", "bench/3"),
            "/v1/sse/pubsub?topic=bench/3"
        );
        for s in [Server::Pushpin, Server::Nchan] {
            assert_eq!(s.subscribe_path(true, "pubsub", "bench/0"), "/sub/bench/0");
            assert_eq!(s.subscribe_path(false, "pubsub", "bench/0"), "/sub/bench/0");
            assert!(s.raw_messages());
        }
        assert!(!Server::Switchboard.raw_messages());
        assert_eq!(Server::Nchan.ws_ready(), WsReady::Upgrade);
        assert_eq!(Server::Pushpin.ws_ready(), WsReady::Opened);
    }

    #[test]
    fn pushpin_items_are_json() {
        let mut out = String::new();
        pushpin_item("bench/0", r#"{"t":17,"seq":2,"pad":"xx"}"#, &mut out);
        assert_eq!(
            out,
            r#"{"channel":"bench/0","formats":{"ws-message":{"content":"{\"t\":17,\"seq\":2,\"pad\":\"xx\"}"},"http-stream":{"content":"data: {\"t\":17,\"seq\":2,\"pad\":\"xx\"}\n\n"}}}"#
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["formats"]["http-stream"]["content"],
            "data: {\"t\":17,\"seq\":2,\"pad\":\"xx\"}\n\n"
        );
        let mut e = String::new();
        json_escape_into("a\\b\n\u{1}é", &mut e);
        assert_eq!(e, "a\\\\b\\n\\u0001é");
    }
}

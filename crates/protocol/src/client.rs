//! Client frames on `GET /v1/ws`: parsing what clients send, encoding what
//! the server sends. Event frames are built from a per-stream head and a tail
//! that is encoded once per message and shared by every stream.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::names::{AppName, StreamName};
use crate::write_json_str;

/// A frame from a client.
#[derive(Debug)]
pub enum ClientFrame {
    Open {
        stream: StreamName,
        app: AppName,
        params: Map<String, Value>,
        resume: Option<String>,
    },
    Send {
        stream: StreamName,
        data: Box<RawValue>,
    },
    Close {
        stream: StreamName,
    },
    Ping,
}

/// Error codes of `error` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadFrame,
    UnknownStream,
    StreamExists,
    TooManyStreams,
    Draining,
}

/// A client frame that could not be understood; `stream` is set when the
/// frame named one we could read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FrameError {
    pub code: ErrorCode,
    pub stream: Option<String>,
    pub message: String,
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type")]
    kind: Option<std::borrow::Cow<'a, str>>,
    stream: Option<Value>,
    app: Option<Value>,
    params: Option<Value>,
    resume: Option<Value>,
    #[serde(default, deserialize_with = "crate::present")]
    data: Option<Box<RawValue>>,
}

fn bad(stream: Option<&StreamName>, message: impl Into<String>) -> FrameError {
    FrameError {
        code: ErrorCode::BadFrame,
        stream: stream.map(|s| s.as_str().to_owned()),
        message: message.into(),
    }
}

impl ClientFrame {
    /// Parses one text frame. Never panics; every refusal says why.
    pub fn parse(bytes: &[u8]) -> Result<Self, FrameError> {
        let raw: RawFrame =
            serde_json::from_slice(bytes).map_err(|e| bad(None, format!("invalid frame: {e}")))?;
        let kind = raw.kind.ok_or_else(|| bad(None, "frame has no \"type\""))?;
        if kind == "ping" {
            return Ok(Self::Ping);
        }
        let stream = match raw.stream {
            Some(Value::String(s)) => {
                StreamName::new(&s).map_err(|e| bad(None, format!("bad \"stream\": {e}")))?
            }
            Some(_) => return Err(bad(None, "\"stream\" must be a string")),
            None => return Err(bad(None, format!("\"{kind}\" frame has no \"stream\""))),
        };
        match &*kind {
            "open" => {
                let app = match raw.app {
                    Some(Value::String(a)) => AppName::new(&a)
                        .map_err(|e| bad(Some(&stream), format!("bad \"app\": {e}")))?,
                    _ => return Err(bad(Some(&stream), "\"open\" needs \"app\" as a string")),
                };
                let params = match raw.params {
                    None | Some(Value::Null) => Map::new(),
                    Some(Value::Object(m)) => m,
                    Some(_) => return Err(bad(Some(&stream), "\"params\" must be an object")),
                };
                let resume = match raw.resume {
                    None | Some(Value::Null) => None,
                    Some(Value::String(r)) => Some(r),
                    Some(_) => return Err(bad(Some(&stream), "\"resume\" must be a string")),
                };
                Ok(Self::Open {
                    stream,
                    app,
                    params,
                    resume,
                })
            }
            "send" => {
                let data = raw
                    .data
                    .ok_or_else(|| bad(Some(&stream), "\"send\" needs \"data\""))?;
                crate::data::check(&data)
                    .map_err(|e| bad(Some(&stream), format!("bad \"data\": {e}")))?;
                Ok(Self::Send { stream, data })
            }
            "close" => Ok(Self::Close { stream }),
            other => Err(bad(Some(&stream), format!("unknown frame type {other:?}"))),
        }
    }
}

/// Server frames other than events, encoded with serde (none is on the hot path).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Opened {
        stream: &'a str,
    },
    Rejected {
        stream: &'a str,
        code: u16,
        reason: &'a str,
    },
    Gap {
        stream: &'a str,
        topics: &'a [&'a str],
    },
    Closed {
        stream: &'a str,
        code: u16,
        reason: &'a str,
    },
    Ping {
        cursors: &'a Map<String, Value>,
    },
    Pong,
    Error {
        stream: Option<&'a str>,
        code: ErrorCode,
        message: &'a str,
    },
}

impl ServerFrame<'_> {
    pub fn to_vec(&self) -> Vec<u8> {
        // Serializing these plain structs into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The per-stream head of an event frame: `{"type":"event","stream":..,"id":..,"event":..`.
/// Ends without a comma; a tail from [`event_tail`] or [`topic_event_tail`] completes it.
pub fn event_head(out: &mut Vec<u8>, stream: &str, cursor: Option<&str>, event: Option<&str>) {
    out.extend_from_slice(b"{\"type\":\"event\",\"stream\":");
    write_json_str(out, stream);
    if let Some(c) = cursor {
        out.extend_from_slice(b",\"id\":");
        write_json_str(out, c);
    }
    if let Some(e) = event {
        out.extend_from_slice(b",\"event\":");
        write_json_str(out, e);
    }
}

/// `,"data":<data>}`: the tail of a push's event frame.
pub fn event_tail(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data);
    out.push(b'}');
}

/// `,"topic":"t","data":<data>}`: the tail of a directly delivered message,
/// the same bytes for every stream on the topic.
pub fn topic_event_tail(topic: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(topic.len() + data.len() + 24);
    out.extend_from_slice(b",\"topic\":");
    write_json_str(&mut out, topic);
    event_tail(&mut out, data);
    out
}

#[cfg(test)]
mod tests;

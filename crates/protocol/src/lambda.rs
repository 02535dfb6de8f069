//! The lambda protocol: events the gateway POSTs, actions the lambda answers.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::close::CloseReason;
use crate::names::Topic;

/// `{"id":..,"state":..}` in every event.
#[derive(Debug, Serialize)]
pub struct StreamRef<'a> {
    pub id: &'a str,
    pub state: Option<&'a RawValue>,
}

/// One message inside a `batch` event.
#[derive(Debug, Serialize)]
pub struct BatchMessage<'a> {
    pub topic: &'a str,
    pub id: &'a str,
    pub data: &'a RawValue,
}

/// An event sent to a lambda.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event<'a> {
    Open {
        stream: StreamRef<'a>,
        transport: &'a str,
        params: &'a Map<String, Value>,
        headers: &'a Map<String, Value>,
        remote_addr: &'a str,
    },
    Message {
        stream: StreamRef<'a>,
        topic: &'a str,
        id: &'a str,
        data: &'a RawValue,
    },
    Batch {
        stream: StreamRef<'a>,
        messages: Vec<BatchMessage<'a>>,
    },
    ClientMessage {
        stream: StreamRef<'a>,
        data: &'a RawValue,
    },
    Timer {
        stream: StreamRef<'a>,
        name: &'a str,
        fired_at_ms: u64,
    },
    Close {
        stream: StreamRef<'a>,
        reason: CloseReason,
    },
}

impl Event<'_> {
    pub fn to_vec(&self) -> Vec<u8> {
        // Serializing borrowed, already-valid JSON into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Writes `{"v":1,"app":"..","events":[e1,e2,..]}` from already-encoded events.
pub fn request_body(app: &str, events: &[&[u8]]) -> Vec<u8> {
    let len: usize = events.iter().map(|e| e.len() + 1).sum();
    let mut out = Vec::with_capacity(len + app.len() + 32);
    out.extend_from_slice(b"{\"v\":1,\"app\":");
    crate::write_json_str(&mut out, app);
    out.extend_from_slice(b",\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(e);
    }
    out.extend_from_slice(b"]}");
    out
}

/// How a subscribed topic's messages reach the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Deliver {
    #[default]
    Lambda,
    Direct,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dedup {
    pub window_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSpec {
    pub max_messages: u32,
    pub max_delay_ms: u64,
}

fn default_reject_code() -> u16 {
    403
}
fn default_close_code() -> u16 {
    4000
}

/// One action in a lambda's answer. On the wire it is internally tagged
/// (`{"type":"push",..}`); [`Action::parse`] reads it in one pass
/// (`lambda/read.rs`): serde's internally tagged enums cannot hold
/// `RawValue` fields. The derived `Deserialize` reads the externally tagged
/// form (`{"push":{..}}`); the tests use it as the reference reading.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Accept {},
    Reject {
        #[serde(default = "default_reject_code")]
        code: u16,
        #[serde(default)]
        reason: String,
    },
    Subscribe {
        topic: Topic,
        deliver: Option<Deliver>,
        rate_limit: Option<RateLimit>,
        dedup: Option<Dedup>,
        batch: Option<BatchSpec>,
    },
    Unsubscribe {
        topic: Topic,
    },
    Push {
        data: Box<RawValue>,
        event: Option<String>,
    },
    Publish {
        topic: Topic,
        data: Box<RawValue>,
        dedup_key: Option<String>,
    },
    SetState {
        state: Box<RawValue>,
    },
    Timer {
        name: String,
        every_ms: Option<u64>,
        after_ms: Option<u64>,
    },
    CancelTimer {
        name: String,
    },
    Buffer {
        sink: String,
        data: Box<RawValue>,
    },
    Close {
        #[serde(default = "default_close_code")]
        code: u16,
        #[serde(default)]
        reason: String,
    },
}

/// Why one action was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid action: {0}")]
pub struct ActionError(pub String);

impl Action {
    /// Reads one action and checks the rules serde cannot express: every
    /// number within its range ([`bounds`]), and that `push`, `publish` and `buffer` data and `set_state` state
    /// are readable by strict JSON readers ([`crate::data::check`]).
    pub fn parse(raw: &RawValue) -> Result<Self, ActionError> {
        let a = read::action(raw)?;
        bounds::check(&a)?;
        match &a {
            Action::Reject { code, .. } if !(400..=599).contains(code) => {
                Err(ActionError(format!("reject code {code} is not 400-599")))
            }
            Action::Close { code, .. } if !(4000..=4999).contains(code) => {
                Err(ActionError(format!("close code {code} is not 4000-4999")))
            }
            Action::Push { data, .. }
            | Action::Publish { data, .. }
            | Action::Buffer { data, .. } => {
                crate::data::check(data)
                    .map_err(|e| ActionError(format!("{} data: {e}", a.kind())))?;
                Ok(a)
            }
            Action::SetState { state } => {
                crate::data::check(state)
                    .map_err(|e| ActionError(format!("set_state state: {e}")))?;
                Ok(a)
            }
            _ => Ok(a),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Action::Accept {} => "accept",
            Action::Reject { .. } => "reject",
            Action::Subscribe { .. } => "subscribe",
            Action::Unsubscribe { .. } => "unsubscribe",
            Action::Push { .. } => "push",
            Action::Publish { .. } => "publish",
            Action::SetState { .. } => "set_state",
            Action::Timer { .. } => "timer",
            Action::CancelTimer { .. } => "cancel_timer",
            Action::Buffer { .. } => "buffer",
            Action::Close { .. } => "close",
        }
    }
}

/// Why a lambda's whole answer was refused (a lambda failure).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("answer is not valid JSON of the form {{\"results\":[{{\"actions\":[..]}},..]}}: {0}")]
    Invalid(String),
    #[error("answer has {got} results for {expected} events")]
    WrongCount { expected: usize, got: usize },
}

#[derive(Deserialize)]
struct RawResponse<'a> {
    #[serde(borrow)]
    results: Vec<RawResult<'a>>,
}

/// One result's actions, borrowed from the answer until each is read.
#[derive(Deserialize)]
struct RawResult<'a> {
    #[serde(default, borrow)]
    actions: Vec<&'a RawValue>,
}

/// The actions of one event: each parsed on its own, so one bad action is
/// skipped while the others still apply.
pub type EventResult = Vec<Result<Action, ActionError>>;

/// Reads a lambda's answer to `expected` events.
pub fn parse_response(body: &[u8], expected: usize) -> Result<Vec<EventResult>, ResponseError> {
    let raw: RawResponse =
        serde_json::from_slice(body).map_err(|e| ResponseError::Invalid(e.to_string()))?;
    if raw.results.len() != expected {
        return Err(ResponseError::WrongCount {
            expected,
            got: raw.results.len(),
        });
    }
    Ok(raw
        .results
        .into_iter()
        .map(|r| r.actions.into_iter().map(Action::parse).collect())
        .collect())
}

pub mod bounds;
mod read;
#[cfg(test)]
mod tests;

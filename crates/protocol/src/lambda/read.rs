//! Reads one action object in a single pass: each known field is kept as a
//! borrowed slice of the answer (no allocation), unknown fields are skipped,
//! and only the fields of the action's `type` are then typed. A repeated
//! field keeps its last value, as a JSON object read into a map would.

use std::fmt;

use serde::de::{self, DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::Deserializer;
use serde_json::value::RawValue;

use super::{default_close_code, default_reject_code, Action, ActionError};

/// The fields any action may carry, in one table.
#[derive(Clone, Copy)]
enum Field {
    Type,
    Code,
    Reason,
    Topic,
    Deliver,
    RateLimit,
    Dedup,
    Batch,
    Data,
    Event,
    DedupKey,
    State,
    Name,
    EveryMs,
    AfterMs,
    Sink,
}

const FIELDS: usize = Field::Sink as usize + 1;

const NAMES: [&str; FIELDS] = [
    "type",
    "code",
    "reason",
    "topic",
    "deliver",
    "rate_limit",
    "dedup",
    "batch",
    "data",
    "event",
    "dedup_key",
    "state",
    "name",
    "every_ms",
    "after_ms",
    "sink",
];

/// A key: the index of one of [`Field`] in [`NAMES`], or None (skipped).
struct Key(Option<usize>);

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(Key(NAMES.iter().position(|n| *n == s)))
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// The known fields of one action object, as they appear in the answer.
struct Fields<'a>([Option<&'a RawValue>; FIELDS]);

impl<'de> de::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Fields<'de>, M::Error> {
                let mut fields = [None; FIELDS];
                while let Some(Key(key)) = map.next_key()? {
                    match key {
                        Some(i) => fields[i] = Some(map.next_value::<&'de RawValue>()?),
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(FieldsVisitor)
    }
}

impl<'a> Fields<'a> {
    fn raw(&self, f: Field) -> Option<&'a RawValue> {
        self.0[f as usize]
    }

    fn typed<T: DeserializeOwned>(raw: &RawValue, f: Field) -> Result<T, ActionError> {
        serde_json::from_str(raw.get()).map_err(|e| {
            // serde_json's "at line L column C" would count from the start
            // of this field's value, not of the answer: left out.
            let text = e.to_string();
            let what = text.rsplit_once(" at line ").map_or(&*text, |(w, _)| w);
            ActionError(format!("field `{}`: {what}", NAMES[f as usize]))
        })
    }

    /// A field the action needs.
    fn required<T: DeserializeOwned>(&self, f: Field) -> Result<T, ActionError> {
        let raw = self.required_raw(f)?;
        Self::typed(raw, f)
    }

    fn required_raw(&self, f: Field) -> Result<&'a RawValue, ActionError> {
        self.raw(f)
            .ok_or_else(|| ActionError(format!("missing field `{}`", NAMES[f as usize])))
    }

    /// An optional field: absent or `null` is None.
    fn optional<T: DeserializeOwned>(&self, f: Field) -> Result<Option<T>, ActionError> {
        self.raw(f).map_or(Ok(None), |raw| Self::typed(raw, f))
    }

    /// A field with a default when absent (`null` is not absent).
    fn or<T: DeserializeOwned>(&self, f: Field, default: T) -> Result<T, ActionError> {
        self.raw(f).map_or(Ok(default), |raw| Self::typed(raw, f))
    }
}

/// The action in `raw` (one element of a result's `actions`), before the
/// rules serde cannot express are checked.
pub(super) fn action(raw: &RawValue) -> Result<Action, ActionError> {
    let f: Fields<'_> = serde_json::from_str(raw.get())
        .map_err(|e| ActionError(format!("an action must be an object: {e}")))?;
    let kind = f
        .raw(Field::Type)
        .ok_or_else(|| ActionError("action has no \"type\"".into()))?;
    let kind: std::borrow::Cow<'_, str> = serde_json::from_str(kind.get())
        .map_err(|_| ActionError("action \"type\" must be a string".into()))?;
    // None: not an action type.
    let read = || -> Result<Option<Action>, ActionError> {
        Ok(Some(match &*kind {
            "accept" => Action::Accept {},
            "reject" => Action::Reject {
                code: f.or(Field::Code, default_reject_code())?,
                reason: f.or(Field::Reason, String::new())?,
            },
            "subscribe" => Action::Subscribe {
                topic: f.required(Field::Topic)?,
                deliver: f.optional(Field::Deliver)?,
                rate_limit: f.optional(Field::RateLimit)?,
                dedup: f.optional(Field::Dedup)?,
                batch: f.optional(Field::Batch)?,
            },
            "unsubscribe" => Action::Unsubscribe {
                topic: f.required(Field::Topic)?,
            },
            "push" => Action::Push {
                data: f.required_raw(Field::Data)?.to_owned(),
                event: f.optional(Field::Event)?,
            },
            "publish" => Action::Publish {
                topic: f.required(Field::Topic)?,
                data: f.required_raw(Field::Data)?.to_owned(),
                dedup_key: f.optional(Field::DedupKey)?,
            },
            "set_state" => Action::SetState {
                state: f.required_raw(Field::State)?.to_owned(),
            },
            "timer" => Action::Timer {
                name: f.required(Field::Name)?,
                every_ms: f.optional(Field::EveryMs)?,
                after_ms: f.optional(Field::AfterMs)?,
            },
            "cancel_timer" => Action::CancelTimer {
                name: f.required(Field::Name)?,
            },
            "buffer" => Action::Buffer {
                sink: f.required(Field::Sink)?,
                data: f.required_raw(Field::Data)?.to_owned(),
            },
            "close" => Action::Close {
                code: f.or(Field::Code, default_close_code())?,
                reason: f.or(Field::Reason, String::new())?,
            },
            _ => return Ok(None),
        }))
    };
    match read() {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(ActionError(format!(
            "unknown action type {kind:?} (accept, reject, subscribe, unsubscribe, push, \
             publish, set_state, timer, cancel_timer, buffer, close)"
        ))),
        // Field errors name the action: "push: missing field `data`".
        Err(e) => Err(ActionError(format!("{kind}: {}", e.0))),
    }
}

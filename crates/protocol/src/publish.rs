//! Bodies of `POST /v1/publish`: one message or a batch, validated whole.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::names::Topic;
use crate::{MAX_MESSAGE_DATA, MAX_PUBLISH_BATCH};

/// A message to publish, validated.
#[derive(Debug, Clone)]
pub struct Publication {
    pub topic: Topic,
    /// Compact JSON (no raw newlines), safe to splice into frames and SSE lines.
    pub data: Box<RawValue>,
    pub dedup_key: Option<String>,
    /// Lambda publishes in the chain that led to this message: 0 from the
    /// publish API, the causing message's hop + 1 from a lambda's `publish`.
    /// Carried by every broker, never shown to clients or lambdas.
    pub hop: u8,
}

/// Why a publish body was refused; `status` is the HTTP status to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PublishError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

fn bad(code: &'static str, message: impl Into<String>) -> PublishError {
    PublishError {
        status: 400,
        code,
        message: message.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMessage {
    topic: String,
    #[serde(default, deserialize_with = "crate::present")]
    data: Option<Box<RawValue>>,
    dedup_key: Option<String>,
}

/// Either shape in one struct: serde's untagged enums cannot hold `RawValue`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBody {
    messages: Option<Vec<RawMessage>>,
    topic: Option<String>,
    #[serde(default, deserialize_with = "crate::present")]
    data: Option<Box<RawValue>>,
    dedup_key: Option<String>,
}

/// Longest `dedup_key`.
pub const MAX_DEDUP_KEY: usize = 256;

/// Makes `data` compact if it holds raw line breaks. Inside JSON strings raw
/// control characters are invalid, so any `\n` or `\r` is whitespace between
/// tokens and re-serializing removes it without changing the value.
pub fn compact(data: Box<RawValue>) -> Result<Box<RawValue>, serde_json::Error> {
    if !data.get().bytes().any(|b| b == b'\n' || b == b'\r') {
        return Ok(data);
    }
    let v: serde_json::Value = serde_json::from_str(data.get())?;
    serde_json::value::to_raw_value(&v)
}

/// Checks one message's fields (also used for a lambda's `publish` action).
/// It does not run [`crate::data::check`]: its callers do, where the data
/// enters ([`PublishBody::parse`], [`crate::lambda::Action::parse`]).
pub fn validate(
    topic: &str,
    data: Box<RawValue>,
    dedup_key: Option<String>,
) -> Result<Publication, PublishError> {
    let topic = Topic::new(topic).map_err(|e| bad("bad_topic", e.to_string()))?;
    if data.get().len() > MAX_MESSAGE_DATA {
        return Err(PublishError {
            status: 413,
            code: "message_too_large",
            message: format!(
                "data of {} bytes is over the {MAX_MESSAGE_DATA}-byte limit",
                data.get().len()
            ),
        });
    }
    if let Some(k) = &dedup_key {
        if k.is_empty() || k.len() > MAX_DEDUP_KEY {
            return Err(bad(
                "bad_dedup_key",
                format!("dedup_key must be 1-{MAX_DEDUP_KEY} bytes"),
            ));
        }
    }
    let data = compact(data).map_err(|e| bad("bad_body", e.to_string()))?;
    Ok(Publication {
        topic,
        data,
        dedup_key,
        hop: 0,
    })
}

/// A parsed publish body: `single` says which answer shape to use.
#[derive(Debug)]
pub struct PublishBody {
    pub messages: Vec<Publication>,
    pub single: bool,
}

impl PublishBody {
    /// Parses and validates a body. A batch with any invalid message, or none, fails whole.
    pub fn parse(body: &[u8]) -> Result<Self, PublishError> {
        let raw: RawBody = serde_json::from_slice(body).map_err(|_| {
            bad(
                "bad_body",
                "body must be {\"topic\":..,\"data\":..} or {\"messages\":[..]} with valid JSON",
            )
        })?;
        let (raws, single) = match raw {
            RawBody {
                messages: Some(m),
                topic: None,
                data: None,
                dedup_key: None,
            } => (m, false),
            RawBody {
                messages: None,
                topic: Some(topic),
                data,
                dedup_key,
            } => (
                vec![RawMessage {
                    topic,
                    data,
                    dedup_key,
                }],
                true,
            ),
            _ => {
                return Err(bad(
                    "bad_body",
                    "body must hold either \"topic\" or \"messages\"",
                ))
            }
        };
        if raws.is_empty() {
            return Err(bad("empty_batch", "a batch needs at least one message"));
        }
        if raws.len() > MAX_PUBLISH_BATCH {
            return Err(PublishError {
                status: 413,
                code: "batch_too_large",
                message: format!("a batch holds at most {MAX_PUBLISH_BATCH} messages"),
            });
        }
        let messages = raws
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                let data = m
                    .data
                    .ok_or_else(|| bad("bad_body", "message has no \"data\""))?;
                crate::data::check(&data)
                    .map_err(|e| bad("bad_data", format!("bad \"data\": {e}")))
                    .and_then(|()| validate(&m.topic, data, m.dedup_key))
                    .map_err(|mut e| {
                        if !single {
                            e.message = format!("messages[{i}]: {}", e.message);
                        }
                        e
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { messages, single })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn single_and_batch() {
        let b = PublishBody::parse(br#"{"topic":"news","data":{"hello":1}}"#).unwrap();
        assert!(b.single);
        assert_eq!(b.messages[0].topic.as_str(), "news");
        let b = PublishBody::parse(
            br#"{"messages":[{"topic":"a","data":1},{"topic":"b","data":2,"dedup_key":"k"}]}"#,
        )
        .unwrap();
        assert!(!b.single);
        assert_eq!(b.messages.len(), 2);
        assert_eq!(b.messages[1].dedup_key.as_deref(), Some("k"));
    }

    #[test]
    fn refusals() {
        let code = |b: &[u8]| PublishBody::parse(b).unwrap_err();
        assert_eq!(code(b"nope").status, 400);
        assert_eq!(code(br#"{"messages":[]}"#).code, "empty_batch");
        assert_eq!(code(br#"{"topic":"a b","data":1}"#).code, "bad_topic");
        assert_eq!(code(br#"{"topic":"a"}"#).status, 400);
        assert_eq!(
            code(br#"{"messages":[{"topic":"a","data":1},{"topic":"*","data":1}]}"#).code,
            "bad_topic"
        );
        let big = format!(
            r#"{{"topic":"a","data":"{}"}}"#,
            "x".repeat(MAX_MESSAGE_DATA)
        );
        assert_eq!(code(big.as_bytes()).status, 413);
        let many = format!(
            r#"{{"messages":[{}]}}"#,
            vec![r#"{"topic":"a","data":1}"#; 1001].join(",")
        );
        assert_eq!(code(many.as_bytes()).status, 413);
    }

    #[test]
    fn null_is_data() {
        let b = PublishBody::parse(br#"{"topic":"a","data":null}"#).unwrap();
        assert_eq!(b.messages[0].data.get(), "null");
        assert!(
            PublishBody::parse(br#"{"topic":"a"}"#).is_err(),
            "absent is not null"
        );
    }

    #[test]
    fn data_is_made_compact() {
        let b = PublishBody::parse(b"{\"topic\":\"a\",\"data\":{\n\"x\" :\r\n 1}}").unwrap();
        assert_eq!(b.messages[0].data.get(), r#"{"x":1}"#);
    }

    /// docs/fuzzing.md, finding 1: data strict JSON readers refuse is a 400.
    #[test]
    fn data_must_be_readable_by_strict_readers() {
        for data in [r#"{"n":1e999}"#, "-1e999", "[2E+400]", r#""\ud800""#] {
            let e = PublishBody::parse(format!(r#"{{"topic":"a","data":{data}}}"#).as_bytes())
                .expect_err(data);
            assert_eq!((e.status, e.code), (400, "bad_data"), "{data}");
            assert!(e.message.starts_with("bad \"data\": "), "{}", e.message);
        }
        let e = PublishBody::parse(
            br#"{"messages":[{"topic":"a","data":1},{"topic":"b","data":{"x":[1e999]}}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, "bad_data");
        assert!(e.message.starts_with("messages[1]: "), "{}", e.message);
        assert!(e.message.contains("number out of range"), "{}", e.message);
        // With a line break too (the data is re-serialized then).
        assert_eq!(
            PublishBody::parse(b"{\"topic\":\"a\",\"data\":[1,\n1e999]}")
                .unwrap_err()
                .status,
            400
        );
        for data in [
            "1e-999",
            "-1.7976931348623157e308",
            "123456789012345678901234567890",
        ] {
            let b =
                PublishBody::parse(format!(r#"{{"topic":"a","data":{data}}}"#).as_bytes()).unwrap();
            assert_eq!(b.messages[0].data.get(), data, "forwarded byte for byte");
        }
    }

    proptest! {
        /// A message is accepted exactly when serde_json's `Value` can read its data.
        #[test]
        fn accepted_iff_data_is_strict_json(
            mantissa in "-?[1-9][0-9]{0,3}(\\.[0-9]{1,3})?",
            exp in -400i32..400,
        ) {
            let n = format!("{mantissa}e{exp}");
            let strict = serde_json::from_str::<serde_json::Value>(&n).is_ok();
            let body = format!(r#"{{"messages":[{{"topic":"a","data":{{"n":{n}}}}}]}}"#);
            match PublishBody::parse(body.as_bytes()) {
                Ok(b) => {
                    prop_assert!(strict, "{} accepted", n);
                    prop_assert!(serde_json::from_str::<serde_json::Value>(b.messages[0].data.get()).is_ok());
                }
                Err(e) => {
                    prop_assert!(!strict, "{} refused: {}", n, e);
                    prop_assert_eq!((e.status, e.code), (400, "bad_data"));
                }
            }
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = PublishBody::parse(&bytes);
        }
        #[test]
        fn accepted_data_has_no_line_breaks(s in r#"\{"topic":"[a-z]{1,4}","data":[ \n\r]*\{[ \n]*"k"[ \n]*:[ \n]*"[a-z\\n]{0,5}"[ \n]*\}[ \n]*\}"#) {
            if let Ok(b) = PublishBody::parse(s.as_bytes()) {
                prop_assert!(!b.messages[0].data.get().contains('\n'));
            }
        }
    }
}

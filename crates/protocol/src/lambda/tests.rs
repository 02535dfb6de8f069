use super::*;
use proptest::prelude::*;

#[test]
fn parses_answer_and_skips_bad_actions() {
    let body = br#"{"results":[{"actions":[{"type":"accept"},{"type":"subscribe","topic":"a/1","deliver":"direct"},{"type":"nope"},{"type":"close","code":12}]},{"actions":[]}]}"#;
    let r = parse_response(body, 2).unwrap();
    assert_eq!(r.len(), 2);
    assert!(matches!(r[0][0], Ok(Action::Accept {})));
    assert!(matches!(
        &r[0][1],
        Ok(Action::Subscribe {
            deliver: Some(Deliver::Direct),
            ..
        })
    ));
    assert!(r[0][2].is_err());
    assert!(r[0][3].is_err());
    assert!(r[1].is_empty());
}

#[test]
fn whole_answer_errors() {
    assert!(matches!(
        parse_response(b"<html>", 1),
        Err(ResponseError::Invalid(_))
    ));
    assert!(matches!(
        parse_response(br#"{"results":[]}"#, 1),
        Err(ResponseError::WrongCount {
            expected: 1,
            got: 0
        })
    ));
}

#[test]
fn actions_with_json_payloads() {
    let p = |s: &str| Action::parse(&serde_json::from_str::<Box<RawValue>>(s).unwrap());
    match p(r#"{"type":"push","event":"comment","data":{"text":"hi","n":[1,null]}}"#) {
        Ok(Action::Push { data, event }) => {
            assert_eq!(data.get(), r#"{"text":"hi","n":[1,null]}"#);
            assert_eq!(event.as_deref(), Some("comment"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(p(r#"{"data":null,"type":"push"}"#), Ok(Action::Push { .. })),
        "any field order, null data"
    );
    assert!(matches!(
        p(r#"{"type":"set_state","state":{"video":"1","count":0}}"#),
        Ok(Action::SetState { .. })
    ));
    assert!(matches!(
        p(r#"{"type":"publish","topic":"a/b","data":"x","dedup_key":"k"}"#),
        Ok(Action::Publish { .. })
    ));
    assert!(matches!(
        p(r#"{"type":"buffer","sink":"s","data":[1]}"#),
        Ok(Action::Buffer { .. })
    ));
    assert!(matches!(p(r#"{"type":"accept"}"#), Ok(Action::Accept {})));
    assert!(p(r#"{"type":"push"}"#).is_err(), "push needs data");
    assert!(p(r#"{"type":5}"#).is_err());
    assert!(p(r#"{"data":1}"#).is_err());
    assert!(p(r#"[1]"#).is_err());
    assert!(
        p(r#"{"type":"push","data":1,"bogus":2}"#).is_ok(),
        "unknown fields are ignored"
    );
}

#[test]
fn action_rules() {
    let p = |s: &str| Action::parse(&serde_json::from_str::<Box<RawValue>>(s).unwrap());
    assert!(p(r#"{"type":"subscribe","topic":"bad topic"}"#).is_err());
    assert!(p(r#"{"type":"timer","name":"t","every_ms":1,"after_ms":2}"#).is_err());
    assert!(p(r#"{"type":"timer","name":"t","every_ms":1000}"#).is_ok());
    assert!(p(r#"{"type":"reject","code":200}"#).is_err());
    assert!(matches!(
        p(r#"{"type":"reject"}"#),
        Ok(Action::Reject { code: 403, .. })
    ));
    assert!(matches!(
        p(r#"{"type":"close"}"#),
        Ok(Action::Close { code: 4000, .. })
    ));
    assert!(
        p(r#"{"type":"subscribe","topic":"t","rate_limit":{"per_second":0,"burst":1}}"#).is_err()
    );
}

/// docs/fuzzing.md, finding 1: data or state that strict JSON readers refuse
/// makes the action invalid (skipped and counted), not the whole answer.
#[test]
fn data_must_be_readable_by_strict_readers() {
    let p = |s: &str| Action::parse(&serde_json::from_str::<Box<RawValue>>(s).unwrap());
    for action in [
        r#"{"type":"push","data":{"n":1e999}}"#,
        r#"{"type":"push","data":"\ud800","event":"e"}"#,
        r#"{"type":"publish","topic":"a/b","data":[-1e999]}"#,
        r#"{"type":"buffer","sink":"s","data":{"x":{"y":2E400}}}"#,
        r#"{"type":"set_state","state":{"count":1e999}}"#,
    ] {
        let e = p(action).expect_err(action);
        assert!(e.0.contains("data: ") || e.0.contains("state: "), "{e}");
    }
    assert!(p(r#"{"type":"push","data":{"n":1e999}}"#)
        .unwrap_err()
        .0
        .contains("number out of range"));
    // Ignored fields are not data: they are dropped, not forwarded.
    assert!(p(r#"{"type":"push","data":1,"bogus":1e999}"#).is_ok());
    assert!(p(r#"{"type":"set_state","state":1e-999}"#).is_ok());
    let body =
        br#"{"results":[{"actions":[{"type":"push","data":1e999},{"type":"push","data":1}]}]}"#;
    let r = parse_response(body, 1).unwrap();
    assert!(r[0][0].is_err());
    assert!(matches!(&r[0][1], Ok(Action::Push { data, .. }) if data.get() == "1"));
}

#[test]
fn events_serialize_to_protocol_shapes() {
    let state = serde_json::value::to_raw_value(&serde_json::json!({"n":1})).unwrap();
    let data = serde_json::value::to_raw_value(&serde_json::json!("hi")).unwrap();
    let e = Event::Message {
        stream: StreamRef {
            id: "s1",
            state: Some(&state),
        },
        topic: "t",
        id: "5",
        data: &data,
    };
    let v: Value = serde_json::from_slice(&e.to_vec()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"type":"message","stream":{"id":"s1","state":{"n":1}},"topic":"t","id":"5","data":"hi"})
    );
    let c = Event::Close {
        stream: StreamRef {
            id: "s1",
            state: None,
        },
        reason: CloseReason::SlowConsumer,
    };
    let v: Value = serde_json::from_slice(&c.to_vec()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"type":"close","stream":{"id":"s1","state":null},"reason":"slow_consumer"})
    );
    let body = request_body("app", &[b"{}", b"[]"]);
    assert_eq!(body, br#"{"v":1,"app":"app","events":[{},[]]}"#);
}

proptest! {
    /// An action carrying data is valid exactly when serde_json's `Value`
    /// can read the data.
    #[test]
    fn data_actions_valid_iff_strict_json(
        kind in 0usize..4,
        mantissa in "-?[1-9][0-9]{0,3}(\\.[0-9]{1,3})?",
        exp in -400i32..400,
    ) {
        let n = format!("{mantissa}e{exp}");
        let strict = serde_json::from_str::<Value>(&n).is_ok();
        let action = match kind {
            0 => format!(r#"{{"type":"push","data":{{"n":{n}}}}}"#),
            1 => format!(r#"{{"type":"publish","topic":"t","data":[{n}]}}"#),
            2 => format!(r#"{{"type":"buffer","sink":"s","data":{n}}}"#),
            _ => format!(r#"{{"type":"set_state","state":{{"n":{n}}}}}"#),
        };
        let body = format!(r#"{{"results":[{{"actions":[{action}]}}]}}"#);
        let r = parse_response(body.as_bytes(), 1).unwrap();
        match &r[0][0] {
            Ok(a) => {
                prop_assert!(strict, "{} accepted", action);
                let data = match a {
                    Action::Push { data, .. } | Action::Publish { data, .. } | Action::Buffer { data, .. } => data,
                    Action::SetState { state } => state,
                    other => return Err(TestCaseError::fail(format!("{other:?}"))),
                };
                prop_assert!(serde_json::from_str::<Value>(data.get()).is_ok());
            }
            Err(e) => prop_assert!(!strict, "{} refused: {}", action, e),
        }
    }

    #[test]
    fn parse_response_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), n in 0usize..4) {
        let _ = parse_response(&bytes, n);
    }

    #[test]
    fn parse_response_never_panics_on_jsonish(
        s in r#"\{"results":\[(\{"actions":\[(\{"type":"(accept|reject|subscribe|push|publish|close|timer|x)"(,"(topic|code|data|name|every_ms|state)":(1|"a/b"|null|\{\}|-5|4001))*\},?){0,3}\]\},?){0,3}\]\}"#,
        n in 0usize..4,
    ) {
        let _ = parse_response(s.as_bytes(), n);
    }
}

/// The reading before `lambda/read.rs`: the object into a map, retagged
/// externally (`{"push":{..}}`), then serde's derived enum. Kept as the
/// reference the single-pass reader is checked against.
fn reference_action(raw: &RawValue) -> Result<Action, String> {
    let mut fields: std::collections::BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
    let kind = fields.remove("type").ok_or("no type")?;
    let kind: String = serde_json::from_str(kind.get()).map_err(|e| e.to_string())?;
    let mut retagged = Vec::new();
    retagged.push(b'{');
    crate::write_json_str(&mut retagged, &kind);
    retagged.extend_from_slice(b":{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            retagged.push(b',');
        }
        crate::write_json_str(&mut retagged, k);
        retagged.push(b':');
        retagged.extend_from_slice(v.get().as_bytes());
    }
    retagged.extend_from_slice(b"}}");
    serde_json::from_slice(&retagged).map_err(|e| e.to_string())
}

#[test]
fn errors_name_the_action_and_field() {
    let p = |s: &str| Action::parse(&serde_json::from_str::<Box<RawValue>>(s).unwrap());
    assert_eq!(
        p(r#"{"type":"push"}"#).unwrap_err().0,
        "push: missing field `data`"
    );
    let e = p(r#"{"type":"subscribe","topic":5}"#).unwrap_err().0;
    assert!(e.starts_with("subscribe: field `topic`: "), "{e}");
    assert!(!e.contains(" at line "), "{e}");
    assert!(p(r#"{"type":"nope"}"#)
        .unwrap_err()
        .0
        .starts_with("unknown action type \"nope\""));
    assert_eq!(
        p(r#"{"type":5}"#).unwrap_err().0,
        "action \"type\" must be a string"
    );
    assert_eq!(p(r#"{"data":1}"#).unwrap_err().0, "action has no \"type\"");
    // A repeated field keeps its last value, as in a map.
    assert!(matches!(
        p(r#"{"type":"close","code":1,"code":4001}"#),
        Ok(Action::Close { code: 4001, .. })
    ));
    // Escaped keys and a type with an escape are read like plain ones.
    assert!(matches!(
        p(r#"{"typ\u0065":"p\u0075sh","d\u0061ta":[1]}"#),
        Ok(Action::Push { .. })
    ));
}

proptest! {
    /// The single-pass reader agrees with the reference reading: the same
    /// action where both read one, and a refusal where the reference refuses.
    #[test]
    fn single_pass_reader_matches_the_reference(
        s in r#"\{"type":"(accept|reject|subscribe|unsubscribe|push|publish|set_state|timer|cancel_timer|buffer|close|x)"(,"(topic|code|reason|deliver|rate_limit|dedup|batch|data|event|dedup_key|state|name|every_ms|after_ms|sink|other)":(1|4001|403|-5|"a/b"|"direct"|"x y"|null|\{\}|\[1\]|true|\{"per_second":2,"burst":1\}|\{"window_ms":5\}|\{"max_messages":2,"max_delay_ms":9\}|1e999)){0,5}\}"#,
    ) {
        let raw: Box<RawValue> = serde_json::from_str(&s).unwrap();
        let ours = read::action(&raw);
        let reference = reference_action(&raw);
        match (&ours, &reference) {
            (Ok(a), Ok(b)) => prop_assert_eq!(format!("{a:?}"), format!("{b:?}"), "{}", s),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "{}: ours {:?}, reference {:?}", s, ours, reference),
        }
    }
}

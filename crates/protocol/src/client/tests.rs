use super::*;
use proptest::prelude::*;

#[test]
fn parses_open() {
    let f = ClientFrame::parse(
        br#"{"type":"open","stream":"c1","app":"live_comments","params":{"video":"1234"},"resume":"e~t~1"}"#,
    )
    .unwrap();
    match f {
        ClientFrame::Open {
            stream,
            app,
            params,
            resume,
        } => {
            assert_eq!(stream.as_str(), "c1");
            assert_eq!(app.as_str(), "live_comments");
            assert_eq!(params["video"], "1234");
            assert_eq!(resume.as_deref(), Some("e~t~1"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn parses_send_close_ping() {
    assert!(matches!(
        ClientFrame::parse(br#"{"type":"send","stream":"c1","data":{"a":[1,2]}}"#),
        Ok(ClientFrame::Send { .. })
    ));
    assert!(matches!(
        ClientFrame::parse(br#"{"type":"close","stream":"c1"}"#),
        Ok(ClientFrame::Close { .. })
    ));
    assert!(matches!(
        ClientFrame::parse(br#"{"type":"ping"}"#),
        Ok(ClientFrame::Ping)
    ));
}

#[test]
fn errors_name_the_stream_when_known() {
    let e = ClientFrame::parse(br#"{"type":"open","stream":"c1","app":"Bad App"}"#).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadFrame);
    assert_eq!(e.stream.as_deref(), Some("c1"));
    let e = ClientFrame::parse(br#"{"type":"wat","stream":"c2"}"#).unwrap_err();
    assert_eq!(e.stream.as_deref(), Some("c2"));
    let e = ClientFrame::parse(b"not json").unwrap_err();
    assert_eq!(e.stream, None);
    assert!(ClientFrame::parse(br#"{"type":"send","stream":"c1"}"#).is_err());
    assert!(ClientFrame::parse(br#"{"type":"open","stream":5,"app":"a"}"#).is_err());
    assert!(ClientFrame::parse(br#"{"type":"open","stream":"c","app":"a","params":[1]}"#).is_err());
}

/// docs/fuzzing.md, finding 1: `send` data that strict JSON readers refuse
/// (the lambda gets it inside a batch of many streams' events) is a `bad_frame`.
#[test]
fn send_data_must_be_readable_by_strict_readers() {
    for data in [
        r#"{"n":1e999}"#,
        "-1e999",
        r#"[1,{"x":2.5E+400}]"#,
        r#""\ud800""#,
        r#"{"\udc00":1}"#,
    ] {
        let frame = format!(r#"{{"type":"send","stream":"c1","data":{data}}}"#);
        let e = ClientFrame::parse(frame.as_bytes()).expect_err(data);
        assert_eq!(e.code, ErrorCode::BadFrame, "{data}");
        assert_eq!(e.stream.as_deref(), Some("c1"), "{data}");
        assert!(e.message.starts_with("bad \"data\": "), "{}", e.message);
    }
    let e = ClientFrame::parse(br#"{"type":"send","stream":"c1","data":{"n":1e999}}"#).unwrap_err();
    assert!(e.message.contains("number out of range"), "{}", e.message);
    // The fuzzer's first find, whitespace and all.
    let fuzzed = concat!(
        r#"{"type":"send","stream":"c1ty%e","data":{"teextv    t(e":   9999999999.9E999999919  ,"#,
        "\"A\"\n:\r\r\r\r\"2yehi\"}}"
    );
    assert!(ClientFrame::parse(fuzzed.as_bytes()).is_err());
    // In range: tiny numbers read as 0, big integers as the nearest double.
    for data in [
        "1e-999",
        "1.7976931348623157e308",
        "123456789012345678901234567890",
        r#""\ud83d\ude00""#,
    ] {
        let frame = format!(r#"{{"type":"send","stream":"c1","data":{data}}}"#);
        assert!(
            matches!(
                ClientFrame::parse(frame.as_bytes()),
                Ok(ClientFrame::Send { .. })
            ),
            "{data}"
        );
    }
}

#[test]
fn event_frames_are_valid_json() {
    let mut head = Vec::new();
    event_head(&mut head, "c\u{1}1", Some("e~t~1"), Some("comment"));
    let tail = topic_event_tail("t", br#"{"x":"y"}"#);
    head.extend_from_slice(&tail);
    let v: Value = serde_json::from_slice(&head).unwrap();
    assert_eq!(v["type"], "event");
    assert_eq!(v["stream"], "c\u{1}1");
    assert_eq!(v["id"], "e~t~1");
    assert_eq!(v["event"], "comment");
    assert_eq!(v["topic"], "t");
    assert_eq!(v["data"]["x"], "y");
}

#[test]
fn server_frames_shapes() {
    let f = ServerFrame::Rejected {
        stream: "c1",
        code: 403,
        reason: "no",
    }
    .to_vec();
    assert_eq!(
        f,
        br#"{"type":"rejected","stream":"c1","code":403,"reason":"no"}"#
    );
    let f = ServerFrame::Error {
        stream: None,
        code: ErrorCode::UnknownStream,
        message: "m",
    }
    .to_vec();
    assert_eq!(
        f,
        br#"{"type":"error","stream":null,"code":"unknown_stream","message":"m"}"#
    );
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = ClientFrame::parse(&bytes);
    }

    #[test]
    fn parse_never_panics_on_jsonish(s in r#"\{("type":"(open|send|close|ping|x)",?)?("stream":("[a-z0-9]{0,5}"|1|null),?)?("app":"[a-z_]{0,5}",?)?("data":(1|"x"|\{\}|\[),?)?("params":(\{\}|1),?)?\}"#) {
        let _ = ClientFrame::parse(s.as_bytes());
    }

    /// A `send` is accepted exactly when serde_json's `Value` can read its
    /// data (numbers around f64's limits, about 1.8e308).
    #[test]
    fn send_accepted_iff_data_is_strict_json(
        mantissa in "-?[1-9][0-9]{0,3}(\\.[0-9]{1,3})?",
        exp in -400i32..400,
    ) {
        let n = format!("{mantissa}e{exp}");
        let strict = serde_json::from_str::<Value>(&n).is_ok();
        let frame = format!(r#"{{"type":"send","stream":"c1","data":{{"n":[{n}]}}}}"#);
        match ClientFrame::parse(frame.as_bytes()) {
            Ok(ClientFrame::Send { data, .. }) => {
                prop_assert!(strict, "{} accepted", n);
                prop_assert!(serde_json::from_str::<Value>(data.get()).is_ok());
            }
            Err(e) => {
                prop_assert!(!strict, "{} refused: {}", n, e);
                prop_assert_eq!(e.code, ErrorCode::BadFrame);
            }
            Ok(other) => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn valid_sends_parse(stream in "[a-zA-Z0-9_]{1,20}", n in any::<i64>()) {
        let frame = format!(r#"{{"type":"send","stream":"{stream}","data":{{"n":{n}}}}}"#);
        match ClientFrame::parse(frame.as_bytes()) {
            Ok(ClientFrame::Send { stream: s, data }) => {
                prop_assert_eq!(s.as_str(), stream.as_str());
                let v: Value = serde_json::from_str(data.get()).unwrap();
                prop_assert_eq!(v["n"].as_i64(), Some(n));
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }
}

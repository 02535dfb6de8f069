use super::*;

#[test]
fn frame_headers() {
    assert_eq!(ws_frame(&[0x81]), Ok(Frame::Need(2)));
    assert_eq!(
        ws_frame(&[0x81, 3, b'a', b'b', b'c', 0x81]),
        Ok(Frame::Whole {
            fin: true,
            opcode: 1,
            start: 2,
            len: 3
        })
    );
    assert_eq!(ws_frame(&[0x81, 126, 1]), Ok(Frame::Need(4)));
    assert_eq!(ws_frame(&[0x81, 126, 1, 0]), Ok(Frame::Need(4 + 256)));
    assert_eq!(ws_frame(&[0x89, 0x82, 1, 2, 3, 4]), Ok(Frame::Need(8)));
    let mut big = vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0];
    big.resize(10 + 65536, 0);
    assert_eq!(
        ws_frame(&big),
        Ok(Frame::Whole {
            fin: true,
            opcode: 2,
            start: 10,
            len: 65536
        })
    );
    assert!(ws_frame(&[0x81, 127, 0xff, 0, 0, 0, 0, 0, 0, 0]).is_err());
    let mut out = Vec::new();
    wire::client_frame(10, b"hi", [1, 2, 3, 4], &mut out);
    assert_eq!(out, [0x8a, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
    out.clear();
    wire::client_frame(1, &[7u8; 300], [0; 4], &mut out);
    assert_eq!(&out[..4], &[0x81, 0x80 | 126, 1, 44]);
    assert_eq!(out.len(), 4 + 4 + 300);
}

#[test]
fn heads_and_bodies() {
    let response_head =
        |b: &[u8]| wire::whole_response_head(b).map(|h| h.map(|h| (h.status, h.len)));
    assert!(response_head(b"HTTP/1.1 101 Switching").is_none());
    assert_eq!(
        response_head(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81"),
        Some(Ok((101, 56)))
    );
    assert!(matches!(response_head(b"garbage\r\n\r\n"), Some(Err(_))));
    let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(response_body(ok), Ok(b"hello".to_vec()));
    let to_end = b"HTTP/1.1 200 OK\r\n\r\nall of it";
    assert_eq!(response_body(to_end), Ok(b"all of it".to_vec()));
    let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\n, w\r\n0\r\n\r\n";
    assert_eq!(response_body(chunked), Ok(b"hello, w".to_vec()));
    assert_eq!(dechunk(b"0\r\n"), Ok(Vec::new()));
    assert!(dechunk(b"5\r\nhel").is_err());
    assert!(dechunk(b"5\r\nhelloXY0\r\n").is_err());
    assert!(dechunk(b"zz\r\n").is_err());
    assert!(dechunk(b"3\r\nabc\r\n").is_err(), "no last chunk");
    assert!(response_body(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
    assert!(response_body(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").is_err());
    assert!(response_body(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
    assert!(
        response_body(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello").is_err()
    );
    assert!(response_body(b"HTTP/1.1 200 OK\r\n").is_err());
}

#[test]
fn prometheus_lines() {
    let text = "# HELP switchboard_app_timers_fired Timer ticks sent to the lambda\n\
                # TYPE switchboard_app_timers_fired counter\n\
                switchboard_app_timers_fired{app=\"pubsub\"} 3\n\
                switchboard_app_timers_fired{app=\"bench\"} 123456\n\
                switchboard_app_timers_fired_extra{app=\"bench\"} 9\n\
                switchboard_app_lambda_events{app=\"bench\"} 1.5e3\n\
                switchboard_app_streams{app=\"bench\"} -2\n";
    assert_eq!(app_metric(text, "timers_fired", "bench"), Some(123_456));
    assert_eq!(app_metric(text, "timers_fired", "pubsub"), Some(3));
    assert_eq!(app_metric(text, "lambda_events", "bench"), Some(1500));
    assert_eq!(app_metric(text, "streams", "bench"), None);
    assert_eq!(app_metric(text, "timers_fired", "other"), None);
    assert_eq!(app_metric(text, "timers_skipped", "bench"), None);
}

#[test]
fn server_frames() {
    let f: ServerFrame = serde_json::from_slice(br#"{"type":"opened","stream":"s7"}"#).unwrap();
    assert_eq!(
        (f.kind.as_ref(), f.stream.as_deref()),
        ("opened", Some("s7"))
    );
    let f: ServerFrame =
        serde_json::from_slice(br#"{"type":"ping","cursors":{"s1":"x"}}"#).unwrap();
    assert_eq!((f.kind.as_ref(), f.stream), ("ping", None));
    let f: ServerFrame = serde_json::from_slice(
        br#"{"type":"error","stream":null,"code":"bad_frame","message":"m"}"#,
    )
    .unwrap();
    assert_eq!(f.stream, None);
    assert!(serde_json::from_slice::<ServerFrame>(br#"{"stream":"s"}"#).is_err());
    assert!(serde_json::from_slice::<ServerFrame>(b"not json").is_err());
}

#[test]
fn frames_are_handled_and_pings_answered() {
    // Build a connection-less buffer check through `frames` by hand.
    let sh = Counters::default();
    let mut buf = Vec::new();
    for p in [
        &br#"{"type":"opened","stream":"s0"}"#[..],
        br#"{"type":"rejected","stream":"s1","code":403,"reason":"no"}"#,
        br#"{"type":"ping","cursors":{}}"#,
        br#"{"type":"closed","stream":"s0","code":4000,"reason":"x"}"#,
        b"nonsense",
    ] {
        buf.push(0x81);
        buf.push(p.len() as u8);
        buf.extend_from_slice(p);
    }
    buf.extend_from_slice(&[0x89, 2, b'h', b'i']);
    buf.extend_from_slice(&[0x81, 10, b'{']);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let end = buf.len();
        let mut c = Conn {
            tcp,
            buf,
            start: 0,
            end,
            mask: 1,
        };
        let mut reply = Vec::new();
        let mut seen = Vec::new();
        let need = frames(&mut c, &sh, &mut reply, &mut seen).unwrap();
        assert_eq!(need, 12, "the cut-off frame needs 2 + 10 bytes");
        assert_eq!(c.start, c.end - 3);
        assert!(matches!(seen[0], Seen::Opened));
        assert!(matches!(seen[1], Seen::Rejected(_)));
        assert_eq!(seen.len(), 5);
        assert_eq!(get(&sh.pings), 1);
        assert_eq!(get(&sh.streams_closed), 1);
        assert_eq!(get(&sh.other), 1);
        assert_eq!(reply.len(), 2 + 4 + 2);
        assert_eq!(&reply[..2], &[0x8a, 0x82]);
        let m = &reply[2..6];
        assert_eq!([reply[6] ^ m[0], reply[7] ^ m[1]], *b"hi");
    });
}

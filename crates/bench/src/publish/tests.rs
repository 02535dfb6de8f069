use super::*;
use tokio::net::TcpListener;

#[test]
fn raw_message_data() {
    let mut s = String::new();
    message_data(17, 3, "", &mut s);
    assert_eq!(s, r#"{"t":17,"seq":3}"#);
    s.clear();
    message_data(1, 2, "xx", &mut s);
    assert_eq!(s, r#"{"t":1,"seq":2,"pad":"xx"}"#);
    assert_eq!(wire::stamp(s.as_bytes()), Some((1, 2)));
}

/// Serves `reply` in pieces of `step` bytes to one connection, once the
/// client has sent `want` request heads; returns what the client sent.
async fn serve(
    reply: &'static [u8],
    step: usize,
    want: usize,
) -> (Target, tokio::task::JoinHandle<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.windows(4).filter(|w| w == b"\r\n\r\n").count() < want {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "client closed early");
            got.extend_from_slice(&buf[..n]);
        }
        for piece in reply.chunks(step) {
            s.write_all(piece).await.unwrap();
            s.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        got
    });
    (
        Target::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        task,
    )
}

#[tokio::test]
async fn pipelined_responses_in_odd_pieces() {
    const REPLY: &[u8] = b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nHTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope";
    for step in [1, 7, REPLY.len()] {
        let (target, server) = serve(REPLY, step, 3).await;
        let mut http = Http::new(target, None);
        let mut reqs = Vec::new();
        for topic in 0..3 {
            http.request_into(&format_args!("/pub/bench/{topic}"), b"{}", &mut reqs);
        }
        let (mut statuses, mut err) = (Vec::new(), String::new());
        http.pipeline(&reqs, 3, &mut statuses, &mut err)
            .await
            .unwrap();
        assert_eq!(statuses, [201, 202, 403], "step {step}");
        assert_eq!(err, "nope");
        assert_eq!(http.start, http.end, "nothing left over");
        let sent = server.await.unwrap();
        assert!(sent.starts_with(b"POST /pub/bench/0 HTTP/1.1\r\n"));
        assert_eq!(sent, reqs);
    }
}

#[tokio::test]
async fn a_close_mid_pipeline_is_an_error() {
    const REPLY: &[u8] = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let (target, server) = serve(REPLY, REPLY.len(), 2).await;
    let mut http = Http::new(target, None);
    let mut reqs = Vec::new();
    http.request_into(&"/pub/a", b"1", &mut reqs);
    http.request_into(&"/pub/a", b"2", &mut reqs);
    let (mut statuses, mut err) = (Vec::new(), String::new());
    let e = http.pipeline(&reqs, 2, &mut statuses, &mut err).await;
    assert!(e.is_err());
    assert_eq!(statuses, [201]);
    assert!(http.tcp.is_none());
    server.await.unwrap();
}

#[tokio::test]
async fn a_post_reads_its_body_only() {
    const REPLY: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nPublished\n";
    let (target, server) = serve(REPLY, 3, 1).await;
    let mut http = Http::new(target, Some("k".into()));
    let (status, body) = http.post("/publish/", b"{\"items\":[]}").await.unwrap();
    assert_eq!((status, &body[..]), (200, &b"Published\n"[..]));
    assert!(http.tcp.is_none(), "Connection: close drops the connection");
    let sent = server.await.unwrap();
    let sent = String::from_utf8(sent).unwrap();
    assert!(sent.contains("Authorization: Bearer k\r\n"), "{sent}");
    assert!(sent.contains("Content-Length: 12\r\n"), "{sent}");
}

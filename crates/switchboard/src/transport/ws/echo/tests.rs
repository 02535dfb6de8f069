//! The echo loop against a real tokio-tungstenite client, behind a hand-made handshake.

use bytes::BytesMut;
use tokio_util::sync::CancellationToken;

use super::{run, EchoLimits};
use crate::transport::ws::handshake::accept_key;

/// A real client against the echo endpoint's loop (`echo::run`, the framing of `/v1/ws`)
/// behind a hand-made handshake, to catch anything the hand-made frames above share with
/// the codec.
#[tokio::test]
async fn echoes_to_a_real_client() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
    use tokio_tungstenite::tungstenite::Message;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(echo_server(listener, 1 << 20));

    let client = async {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/_echo"))
            .await
            .unwrap();
        let big = "x".repeat(100 * 1024);
        for message in ["hello", "héllo ☃", "", &big] {
            ws.send(Message::text(message)).await.unwrap();
            assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(message));
        }
        ws.send(Message::Binary(vec![0, 255, 1])).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::Binary(vec![0, 255, 1])
        );
        ws.send(Message::Ping(b"hi".to_vec())).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::Pong(b"hi".to_vec())
        );

        ws.close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
        match ws.next().await {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal),
            other => panic!("expected the server's close, got {other:?}"),
        }
        assert!(ws.next().await.is_none());
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), client)
        .await
        .expect("client timed out");
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("the echo loop did not end after the close")
        .unwrap();
}

/// Accepts one connection, answers its upgrade and runs the echo loop on it.
async fn echo_server(listener: tokio::net::TcpListener, max_message: usize) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let (mut socket, _) = listener.accept().await.unwrap();
    let mut buf = BytesMut::with_capacity(1024);
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|window| window == b"\r\n\r\n") {
            break at + 4;
        }
        assert!(
            socket.read_buf(&mut buf).await.unwrap() > 0,
            "client closed mid-request"
        );
    };
    // Anything after the request head is already WebSocket framing; it stays in `buf`.
    let request = buf.split_to(head_end);
    let key = std::str::from_utf8(&request)
        .unwrap()
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim())
        })
        .expect("no Sec-WebSocket-Key");
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key.as_bytes())
    );
    socket.write_all(response.as_bytes()).await.unwrap();
    let limits = EchoLimits {
        max_message,
        write_timeout: std::time::Duration::from_secs(10),
    };
    run(
        crate::tls::Socket::Plain(socket),
        buf.freeze(),
        limits,
        CancellationToken::new(),
    )
    .await;
}

//! TLS on the listener: the handshake, within the header timeout, after
//! which hyper and the WebSocket task read and write the [`Socket`].

use std::io;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsStream};

use crate::tls::Socket;

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a plain HTTP request on the TLS port gets, with a `400` (nginx
/// answers 400 too).
const PLAIN_HTTP_BODY: &str =
    r#"{"error":{"code":"tls_required","message":"this port speaks TLS: use https:// or wss://"}}"#;

/// Why a handshake failed (the log says more).
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("no TLS handshake within header_timeout")]
    Timeout,
    #[error("plain HTTP on the TLS port")]
    PlainHttp,
    #[error("TLS handshake failed: {0}")]
    Failed(io::Error),
}

/// The server side of the handshake, within `limit`. A client that opens
/// with something other than a TLS record (plain HTTP, most likely) gets a
/// `400` naming the problem, in plaintext, and is closed.
pub async fn accept(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    limit: Duration,
    max_head: usize,
) -> Result<Socket, HandshakeError> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut first = [0u8; 1];
    // Looks without taking: a plain request is still there to be read.
    match tokio::time::timeout_at(deadline, tcp.peek(&mut first)).await {
        Err(_) => return Err(HandshakeError::Timeout),
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => {}
        Ok(Ok(1)) => {
            refuse_plain_http(tcp, max_head).await;
            return Err(HandshakeError::PlainHttp);
        }
        Ok(Ok(_)) => return Err(HandshakeError::Failed(io::ErrorKind::UnexpectedEof.into())),
        Ok(Err(e)) => return Err(HandshakeError::Failed(e)),
    }
    match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
        Err(_) => Err(HandshakeError::Timeout),
        Ok(Ok(tls)) => Ok(Socket::Tls(Box::new(TlsStream::Server(tls)))),
        Ok(Err(e)) => Err(HandshakeError::Failed(e)),
    }
}

/// Answers a plain HTTP request that reached the TLS port, then closes.
/// What the client sent is read first (what arrived already, up to
/// `max_head`), so that the close does not reset the connection before
/// the answer is read.
async fn refuse_plain_http(mut tcp: TcpStream, max_head: usize) {
    let mut sink = vec![0u8; 4096];
    let mut read = 0;
    while read < max_head {
        match tcp.try_read(&mut sink) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(_) => break,
        }
    }
    let answer = async {
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{PLAIN_HTTP_BODY}",
            PLAIN_HTTP_BODY.len()
        );
        tcp.write_all(answer.as_bytes()).await?;
        tcp.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
}

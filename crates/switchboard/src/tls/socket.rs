//! [`Socket`]: the one stream type of the listener's connections (hyper,
//! then the WebSocket task) and of the lambda client's, plain TCP or TLS.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

/// A connection, plain or TLS: a client's (after the PROXY header and the
/// handshake) or a lambda's. An enum rather than a generic: one `match`
/// per call, one copy of the code that uses it.
pub enum Socket {
    Plain(TcpStream),
    /// Boxed: rustls's state is over a kilobyte.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Socket {
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }

    /// Appends what has come to `buf`, or registers for it; `Ok(0)` at
    /// the end. A plain socket reserves `chunk` only once data is there, so
    /// an idle connection holds no read buffer; TLS reads through rustls,
    /// which needs the room to decrypt into. A poll function rather than an
    /// `async fn`: an idle connection's task holds only its two references.
    pub fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        chunk: usize,
    ) -> Poll<io::Result<usize>> {
        match self {
            Self::Plain(tcp) => loop {
                ready!(tcp.poll_read_ready(cx))?;
                reserve(buf, chunk);
                match tcp.try_read_buf(buf) {
                    // Readiness was stale: cleared now, so the next poll waits.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => return Poll::Ready(r),
                }
            },
            Self::Tls(tls) => {
                reserve(buf, chunk);
                tokio_util::io::poll_read_buf(Pin::new(&mut **tls), cx, buf)
            }
        }
    }

    /// Writes what the socket takes now; `WouldBlock` when it takes nothing.
    /// TLS encrypts into rustls's buffer, which [`Socket::try_flush`] sends.
    pub fn try_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        slices: &[io::IoSlice<'_>],
    ) -> io::Result<usize> {
        match self {
            Self::Plain(tcp) => tcp.try_write_vectored(slices),
            Self::Tls(tls) => match Pin::new(&mut **tls).poll_write_vectored(cx, slices) {
                Poll::Ready(r) => r,
                Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
            },
        }
    }

    /// Whether everything written has left for the socket (always, plain).
    pub fn try_flush(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        match self {
            Self::Plain(_) => Ok(true),
            Self::Tls(tls) => match Pin::new(&mut **tls).poll_flush(cx) {
                Poll::Ready(r) => r.map(|()| true),
                Poll::Pending => Ok(false),
            },
        }
    }
}

fn reserve(buf: &mut BytesMut, chunk: usize) {
    if buf.capacity() - buf.len() < chunk {
        buf.reserve(chunk);
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Self::Tls(tls) => Pin::new(&mut **tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Self::Tls(tls) => Pin::new(&mut **tls).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Self::Tls(tls) => Pin::new(&mut **tls).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(tcp) => tcp.is_write_vectored(),
            Self::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Self::Tls(tls) => Pin::new(&mut **tls).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Self::Tls(tls) => Pin::new(&mut **tls).poll_shutdown(cx),
        }
    }
}

/// What the lambda client's pool knows of a connection.
impl Connection for Socket {
    fn connected(&self) -> Connected {
        match self {
            Self::Plain(tcp) => tcp.connected(),
            Self::Tls(tls) => tls.get_ref().0.connected(),
        }
    }
}

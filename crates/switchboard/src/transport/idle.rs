//! hyper's header-read timer, taught to tell a keep-alive connection's wait
//! for its next request (`idle_timeout`) from a head that is being sent
//! (`header_timeout`, from its first byte; on a new connection, from the
//! accept).
//!
//! hyper arms its header timer each time it starts reading a head (right
//! after accept, and as soon as a response is done on a keep-alive
//! connection) and closes the connection when it fires. [`HeadTimer`] is
//! that timer: its sleep counts the connection's bytes through
//! [`Counted`], and while none has come since a keep-alive wait began, it
//! runs to `idle_timeout`; the first byte resets it to `header_timeout`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from one connection so far.
#[derive(Debug, Default)]
pub struct ByteCount(AtomicU64);

impl ByteCount {
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The IO that hyper reads: counts bytes into a [`ByteCount`].
pub struct Counted<T> {
    inner: T,
    count: Arc<ByteCount>,
}

impl<T> Counted<T> {
    pub fn new(inner: T, count: Arc<ByteCount>) -> Self {
        Self { inner, count }
    }

    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.count.0.fetch_add(n as u64, Ordering::Relaxed);
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// One connection's header timer (give hyper `header_read_timeout` =
/// `header` too, so that it arms it).
#[derive(Clone)]
pub struct HeadTimer {
    pub header: Duration,
    pub idle: Duration,
    pub count: Arc<ByteCount>,
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(HeadSleep::plain(tokio::time::Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let seen = self.count.get();
        if seen == 0 {
            // A new connection: its first head within `header` of the accept.
            return Box::pin(HeadSleep::plain(tokio::time::Instant::from_std(deadline)));
        }
        Box::pin(HeadSleep {
            sleep: Box::pin(tokio::time::sleep(self.idle)),
            waiting: Some((self.count.clone(), seen, self.header)),
        })
    }
}

/// Fires at its deadline; while `waiting`, the deadline moves to
/// `header` after the first new byte.
struct HeadSleep {
    sleep: Pin<Box<tokio::time::Sleep>>,
    waiting: Option<(Arc<ByteCount>, u64, Duration)>,
}

impl HeadSleep {
    fn plain(deadline: tokio::time::Instant) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            waiting: None,
        }
    }
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some((count, seen, header)) = &self.waiting {
            if count.get() != *seen {
                let deadline = tokio::time::Instant::now() + *header;
                self.waiting = None;
                self.sleep.as_mut().reset(deadline);
            }
        }
        self.sleep.as_mut().poll(cx)
    }
}

impl Sleep for HeadSleep {}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer() -> HeadTimer {
        HeadTimer {
            header: Duration::from_secs(10),
            idle: Duration::from_secs(75),
            count: Arc::new(ByteCount::default()),
        }
    }

    fn pending(s: &mut Pin<Box<dyn Sleep>>) -> bool {
        let waker = futures_util::task::noop_waker();
        s.as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_gets_the_header_timeout() {
        let t = timer();
        let mut s = t.sleep_until(Instant::now() + t.header);
        assert!(pending(&mut s));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!pending(&mut s));
    }

    #[tokio::test(start_paused = true)]
    async fn a_keep_alive_wait_gets_the_idle_timeout_until_a_byte_comes() {
        let t = timer();
        t.count.0.store(100, Ordering::Relaxed);
        let mut s = t.sleep_until(Instant::now() + t.header);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(pending(&mut s), "idle: 75 s");
        t.count.0.store(101, Ordering::Relaxed);
        assert!(pending(&mut s));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(pending(&mut s));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!pending(&mut s), "the head's 10 s since its first byte");
        let mut idle = t.sleep_until(Instant::now() + t.header);
        tokio::time::advance(Duration::from_secs(76)).await;
        assert!(!pending(&mut idle));
    }
}

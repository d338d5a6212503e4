//! Deadlines on a connection's byte stream, so no connection state can hold a slot
//! forever: the connection ends when nothing was read or written for `idle` (an
//! HTTP/2 connection left open after its last stream, a client that stops mid-way), or
//! when a write makes no progress for `write` (a client that pipelines requests and
//! never reads the answers, so the socket's send buffer stays full).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep, sleep};

/// A byte stream with an idle deadline and a write-progress deadline.
#[derive(Debug)]
pub(crate) struct Deadlines<T> {
    inner: T,
    idle: Duration,
    write: Duration,
    /// Fires `idle` after the last byte moved in either direction.
    idle_timer: Pin<Box<Sleep>>,
    /// Armed while a write is blocked; fires `write` after it blocked.
    write_timer: Option<Pin<Box<Sleep>>>,
}

impl<T> Deadlines<T> {
    pub(crate) fn new(inner: T, idle: Duration, write: Duration) -> Self {
        Self {
            inner,
            idle,
            write,
            idle_timer: Box::pin(sleep(idle)),
            write_timer: None,
        }
    }

    fn progressed(&mut self) {
        self.idle_timer.as_mut().reset(Instant::now() + self.idle);
    }

    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.idle_timer.as_mut().poll(cx).is_ready()
    }

    /// Progress resets both deadlines; a blocked write arms the write deadline.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(result) => {
                self.write_timer = None;
                if matches!(result, Ok(n) if n > 0) {
                    self.progressed();
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let write = self.write;
                let timer = self
                    .write_timer
                    .get_or_insert_with(|| Box::pin(sleep(write)));
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Err(timed_out("the client does not read its answers")))
            }
        }
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_owned())
}

impl<T: AsyncRead + Unpin> AsyncRead for Deadlines<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.progressed();
                }
                Poll::Ready(result)
            }
            Poll::Pending if self.idle_expired(cx) => {
                Poll::Ready(Err(timed_out("connection idle for too long")))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Deadlines<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        self.after_write(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_cut_off_after_the_idle_time() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut io = Deadlines::new(ours, Duration::from_secs(60), Duration::from_secs(5));
        let mut buf = [0u8; 8];
        let started = Instant::now();
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed().as_secs(), 60);
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_keeps_a_connection_alive() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut io = Deadlines::new(ours, Duration::from_secs(60), Duration::from_secs(5));
        let mut buf = [0u8; 1];
        for _ in 0..5 {
            sleep(Duration::from_secs(50)).await;
            theirs.write_all(b"x").await.unwrap();
            io.read_exact(&mut buf).await.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_never_reads_is_cut_off_after_the_write_time() {
        let (ours, _theirs) = tokio::io::duplex(16);
        let mut io = Deadlines::new(ours, Duration::from_secs(60), Duration::from_secs(5));
        let started = Instant::now();
        let err = io.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed().as_secs(), 5);
    }
}

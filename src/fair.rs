//! Keeps one HTTP/2 connection from holding the runtime: its reads are charged to its task's
//! tokio budget by the byte, not by the read.
//!
//! tokio makes a task yield after 128 budgeted operations, and a socket read is one of them
//! whatever it returns. hyper's HTTP/2 server reads and handles frames until the socket is empty,
//! so a client writing small frames as fast as it can (SETTINGS or PING floods, CVE-2019-9512 and
//! -9515) had its connection handle megabytes of them in one poll: on a one-CPU gateway,
//! `scripts/chaos.sh` (case 8) measured a steady load's p99 going from 4 ms to 115-165 ms under four
//! such connections. Charging a unit per [`BYTES_PER_UNIT`] read makes such a connection yield
//! after about 32 KiB, while an ordinary request's frames cost a unit or two.
//!
//! HTTP/1 connections are not wrapped: hyper handles one request of theirs at a time.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read per unit of the task's budget (128 units per poll).
const BYTES_PER_UNIT: usize = 256;

/// An HTTP/2 connection's transport, paying for what it read before it reads again.
pub struct Fair<I> {
    io: I,
    /// Units owed for bytes already read.
    owed: usize,
}

impl<I> Fair<I> {
    pub fn new(io: I) -> Self {
        Self { io, owed: 0 }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Fair<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        // Pending here (the budget is spent) has tokio wake the task once it has yielded.
        while this.owed > 0 {
            ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
            this.owed -= 1;
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        this.owed = (buf.filled().len() - before) / BYTES_PER_UNIT;
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Fair<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A connection that always has bytes to read yields to other tasks: a task counting beside
    /// it on a one-thread runtime keeps getting turns.
    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_that_always_has_bytes_yields() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let flood = vec![0u8; 1 << 20];
        client.write_all(&flood).await.expect("write");
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = ticks.clone();
        let ticker = tokio::spawn(async move {
            loop {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        });
        let mut reader = Fair::new(server);
        let mut buf = vec![0u8; 64 * 1024];
        let mut read = 0;
        while read < flood.len() {
            read += reader.read(&mut buf).await.expect("read");
        }
        ticker.abort();
        // 1 MiB at 256 bytes a unit is 4,096 units: at least 30 yields of 128 units each.
        assert!(
            ticks.load(std::sync::atomic::Ordering::Relaxed) >= 30,
            "the reader never yielded"
        );
    }

    #[tokio::test]
    async fn bytes_pass_through_unchanged() {
        let (mut client, server) = tokio::io::duplex(4096);
        let mut fair = Fair::new(server);
        client.write_all(b"PRI * HTTP/2.0").await.expect("write");
        let mut got = [0u8; 14];
        fair.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"PRI * HTTP/2.0");
        fair.write_all(b"ok").await.expect("write");
        let mut back = [0u8; 2];
        client.read_exact(&mut back).await.expect("read");
        assert_eq!(&back, b"ok");
    }
}

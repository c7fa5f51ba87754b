//! Tells HTTP/2 from HTTP/1 by a connection's first bytes, then hands those bytes back to the
//! chosen protocol's parser. Every HTTP/2 connection, cleartext or TLS, opens with the same
//! 24-byte preface (RFC 9113 §3.4), and no HTTP/1 request line begins like it, so the first byte
//! that leaves the preface means HTTP/1, and the whole preface means HTTP/2.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Room for a typical request head, so the parser's first read usually finds all of it here.
const FIRST_READ_BYTES: usize = 1024;

/// What [`Replay::refill`] reads of an idle connection's next request: enough to know one has
/// begun, and small enough to fit the room the connection's task already has (`server`'s size
/// test; 64 bytes grew it).
const REFILL_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// Reads until the bytes decide the protocol; `None` if the client closes before they do.
/// A client that trickles a prefix of the preface is read on: the caller bounds the wait.
pub async fn sniff<I: AsyncRead + Unpin>(mut io: I) -> io::Result<Option<(Protocol, Replay<I>)>> {
    let mut first = BytesMut::with_capacity(FIRST_READ_BYTES);
    loop {
        if io.read_buf(&mut first).await? == 0 {
            return Ok(None);
        }
        let n = first.len().min(PREFACE.len());
        let protocol = if first[..n] != PREFACE[..n] {
            Protocol::Http1
        } else if n == PREFACE.len() {
            Protocol::Http2
        } else {
            continue;
        };
        let first = first.freeze();
        return Ok(Some((protocol, Replay { first, io })));
    }
}

/// The connection, with the bytes [`sniff`] read served again before anything new.
pub struct Replay<I> {
    first: Bytes,
    io: I,
}

impl<I: AsyncRead + Unpin> Replay<I> {
    /// Waits for the connection's next bytes and keeps them to serve again, as [`sniff`] does
    /// the first: how a connection released while idle (see `timer`) learns that its next request
    /// has begun. `false` once the client has closed.
    pub async fn refill(&mut self) -> io::Result<bool> {
        if !self.first.is_empty() {
            return Ok(true);
        }
        // In the task's own memory, not the heap: the wait can last `idle_timeout`, and 10,000
        // idle connections would hold 10 MB of buffers for it. A few bytes are enough to know a
        // request has begun; hyper reads the rest.
        let mut next = [0u8; REFILL_BYTES];
        let n = self.io.read(&mut next).await?;
        if n == 0 {
            return Ok(false);
        }
        self.first = Bytes::copy_from_slice(&next[..n]);
        Ok(true)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Replay<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.first.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.first.len().min(buf.remaining());
        buf.put_slice(&this.first[..n]);
        this.first.advance(n);
        if this.first.is_empty() {
            // Its buffer, freed: an idle connection holds none of ours.
            this.first = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Replay<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncWriteExt, duplex};

    use super::*;

    /// Sends `writes` one by one (each its own read on the other side), then closes; returns
    /// what `sniff` decided and everything the replayed connection then yields.
    async fn sniffed(writes: &[&[u8]]) -> Option<(Protocol, Vec<u8>)> {
        let (mut client, server) = duplex(4096);
        let writes: Vec<Vec<u8>> = writes.iter().map(|w| w.to_vec()).collect();
        let sender = tokio::spawn(async move {
            for w in writes {
                client.write_all(&w).await.expect("write");
                tokio::task::yield_now().await;
            }
        });
        let result = sniff(server).await.expect("sniff");
        sender.await.expect("sender");
        let (protocol, mut replay) = result?;
        let mut all = Vec::new();
        replay.read_to_end(&mut all).await.expect("read");
        Some((protocol, all))
    }

    #[tokio::test]
    async fn http1_requests_are_http1_and_replayed_whole() {
        let request: &[u8] = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";
        assert_eq!(sniffed(&[request]).await, Some((Protocol::Http1, request.to_vec())));
        // `PROPFIND` shares the preface's first letter; `POST` sent a byte at a time, too.
        let propfind: &[u8] = b"PROPFIND / HTTP/1.1\r\n\r\n";
        assert_eq!(sniffed(&[propfind]).await, Some((Protocol::Http1, propfind.to_vec())));
        let got = sniffed(&[b"P", b"O", b"ST / HTTP/1.1\r\n\r\n"]).await;
        assert_eq!(got, Some((Protocol::Http1, b"POST / HTTP/1.1\r\n\r\n".to_vec())));
    }

    #[tokio::test]
    async fn the_preface_is_http2_even_when_it_arrives_in_pieces() {
        let frames: &[u8] = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00";
        let whole = [PREFACE, frames].concat();
        assert_eq!(sniffed(&[&whole]).await, Some((Protocol::Http2, whole.clone())));
        let got = sniffed(&[&PREFACE[..3], &PREFACE[3..20], &PREFACE[20..], frames]).await;
        assert_eq!(got, Some((Protocol::Http2, whole)));
    }

    #[tokio::test]
    async fn a_client_that_closes_early_is_neither() {
        assert_eq!(sniffed(&[]).await, None);
        assert_eq!(sniffed(&[b"PRI * HT"]).await, None);
    }

    /// A refill reads less than a request head: what it read is served first, then the rest.
    #[tokio::test]
    async fn a_refill_replays_the_next_request_whole_and_sees_a_close() {
        let (mut client, server) = duplex(4096);
        let mut replay = Replay {
            first: Bytes::new(),
            io: server,
        };
        let request = b"GET /a/path/longer/than/one/refill HTTP/1.1\r\nhost: a\r\n\r\n";
        assert!(request.len() > REFILL_BYTES);
        client.write_all(request).await.expect("write");
        assert!(replay.refill().await.expect("refill"));
        let mut head = vec![0; request.len()];
        replay.read_exact(&mut head).await.expect("read");
        assert_eq!(head, request);
        drop(client);
        assert!(!replay.refill().await.expect("refill after the close"));
    }
}

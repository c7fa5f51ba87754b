//! The idle timeout of HTTP/2 connections.
//!
//! An idle HTTP/1 keep-alive connection is closed by its header timer (see `timer`), which runs
//! while hyper waits for the next request head. An HTTP/2 connection has no such timer; hyper
//! keeps it for as long as the client answers pings, so clients that connect and then do nothing
//! (or nothing more) would hold `max_connections` slots for ever. [`Streams`] counts a
//! connection's open streams and notes when the last one ended; [`Streams::idle`] resolves once
//! none has been open for the timeout, and the server then closes the connection gracefully
//! (GOAWAY).
//!
//! A stream is open from its request until its response body has been sent, so a long download
//! or a slow app is activity, not idleness.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::Instant;

use crate::body::{self, Body, BoxError};

/// One connection's streams. Cloned into its service; all clones count the same streams.
#[derive(Clone)]
pub struct Streams(Arc<Inner>);

struct Inner {
    open: AtomicUsize,
    /// When the connection began; `last_end` counts from here.
    epoch: Instant,
    /// Milliseconds from `epoch` to the end of the latest stream (0 before any).
    last_end: AtomicU64,
}

impl Default for Streams {
    fn default() -> Self {
        Self(Arc::new(Inner {
            open: AtomicUsize::new(0),
            epoch: Instant::now(),
            last_end: AtomicU64::new(0),
        }))
    }
}

impl Streams {
    /// Counts a stream as open until the guard is dropped.
    pub fn open(&self) -> StreamGuard {
        self.0.open.fetch_add(1, Ordering::AcqRel);
        StreamGuard(self.clone())
    }

    /// Resolves once no stream has been open for `timeout`: at the earliest `timeout` after the
    /// last one ended (or after the connection began), at the latest twice that.
    pub async fn idle(&self, timeout: Duration) {
        let mut check_at = self.0.epoch + timeout;
        loop {
            tokio::time::sleep_until(check_at).await;
            let now = Instant::now();
            if self.0.open.load(Ordering::Acquire) > 0 {
                check_at = now + timeout;
                continue;
            }
            let idle_since = self.0.epoch + Duration::from_millis(self.0.last_end.load(Ordering::Acquire));
            if idle_since + timeout <= now {
                return;
            }
            check_at = idle_since + timeout;
        }
    }
}

/// Keeps its stream counted as open while it lives.
pub struct StreamGuard(Streams);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let inner = &self.0.0;
        let since_epoch = Instant::now().saturating_duration_since(inner.epoch);
        let millis = u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX);
        // Stored before the count drops, so whoever sees no open stream also sees this end.
        inner.last_end.fetch_max(millis, Ordering::AcqRel);
        inner.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `body`, holding `guard` until the body is done (sent in full, or dropped on a reset).
pub fn guarded(body: Body, guard: StreamGuard) -> Body {
    body::stream(Guarded { body, _guard: guard })
}

struct Guarded {
    body: Body,
    _guard: StreamGuard,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// Moves the paused clock on by `by`, then polls `idle` once: whether it has resolved.
    async fn idle_after(idle: &mut Pin<Box<impl Future<Output = ()>>>, by: Duration) -> bool {
        tokio::time::advance(by).await;
        std::future::poll_fn(|cx| Poll::Ready(idle.as_mut().poll(cx).is_ready())).await
    }

    #[test]
    fn a_response_body_keeps_its_stream_open_until_it_is_dropped() {
        let streams = Streams::default();
        let body = guarded(body::full("streaming"), streams.open());
        assert_eq!(streams.0.open.load(Ordering::Acquire), 1);
        drop(body);
        assert_eq!(streams.0.open.load(Ordering::Acquire), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_streams_is_idle_after_the_timeout() {
        let streams = Streams::default();
        let mut idle = Box::pin(streams.idle(TIMEOUT));
        assert!(!idle_after(&mut idle, TIMEOUT - Duration::from_millis(1)).await);
        assert!(idle_after(&mut idle, Duration::from_millis(1)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_stream_is_never_idle_and_idleness_counts_from_its_end() {
        let streams = Streams::default();
        let mut idle = Box::pin(streams.idle(TIMEOUT));
        let stream = streams.open();
        assert!(!idle_after(&mut idle, TIMEOUT * 3).await);
        drop(stream);
        assert!(!idle_after(&mut idle, TIMEOUT - Duration::from_millis(1)).await);
        // Rechecked within a second timeout period of the stream's end.
        assert!(idle_after(&mut idle, TIMEOUT).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_ended_recently_defers_idleness() {
        let streams = Streams::default();
        let mut idle = Box::pin(streams.idle(TIMEOUT));
        tokio::time::advance(TIMEOUT / 2).await;
        drop(streams.open());
        assert!(!idle_after(&mut idle, TIMEOUT / 2).await);
        assert!(idle_after(&mut idle, TIMEOUT / 2).await);
    }
}

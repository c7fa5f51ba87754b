//! hyper's HTTP/1 header-read timer, one per connection, which also keeps idle keep-alive
//! connections for `idle_timeout`.
//!
//! hyper asks its timer for a fresh sleep each time it starts waiting for a request head and drops
//! it once the head is in, so on a kept-alive connection that is once per request. With tokio's
//! timer every one of those is a timer-wheel insertion and removal, and the insertion also wakes
//! the event loop through its eventfd whenever the new deadline is earlier than the loop's planned
//! wake-up, which under load is most of the time (the header-read timeout is the shortest timer
//! the gateway keeps): about 0.75 extra `write` syscalls per proxied request in
//! `scripts/bench-proxy.sh`.
//!
//! [`HeaderTimer`] instead lends each request the connection's one tokio sleep and moves its
//! deadline. Moving it later is one atomic store while the sleep is still in the wheel; when the
//! old deadline comes round, tokio files it again under the new one. The cost is at most one
//! spurious wake-up of the connection per timeout period.
//!
//! hyper starts that wait right after each answer, before the client has sent anything, so on its
//! own it would close a kept-alive connection after `header_read_timeout` of quiet: a load
//! balancer that keeps connections open longer (60 s is common) would then now and again send a
//! request on a connection the gateway is closing, and answer its client 502. So every wait but a
//! connection's first begins as keep-alive idling, with `idle_timeout`; once bytes arrive (counted
//! by [`CountReads`]) the head has begun and gets `header_read_timeout` from then on.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

type TokioSleep = Pin<Box<tokio::time::Sleep>>;

/// Give each connection its own: the sleep it lends is that connection's.
pub struct HeaderTimer {
    shared: Arc<Shared>,
    /// How long a kept-alive connection may wait for the next request to begin.
    keep_alive: Duration,
    /// Set by the connection's first wait for a head; every later one starts idle.
    waited: AtomicBool,
}

struct Shared {
    /// The connection's sleep while no request holds it.
    idle: Mutex<Option<TokioSleep>>,
    /// Reads that brought bytes, counted by [`CountReads`] (the only writer).
    reads: AtomicU64,
    /// hyper's timeout, configured with this timer (`header_read_timeout`).
    head: Duration,
}

impl HeaderTimer {
    /// `head` must be the `header_read_timeout` hyper is given with this timer.
    pub fn new(head: Duration, keep_alive: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                idle: Mutex::new(None),
                reads: AtomicU64::new(0),
                head,
            }),
            keep_alive,
            waited: AtomicBool::new(false),
        }
    }

    /// The connection's reader, counting the reads this timer watches for a head's first bytes.
    pub fn count_reads<I>(&self, io: I) -> CountReads<I> {
        CountReads {
            io,
            shared: self.shared.clone(),
        }
    }

    /// The deadline and phase of a wait for a head that hyper wants over by `deadline`, which it
    /// set `head` from now (so the clock need not be read again).
    fn begin_wait(&self, deadline: Instant) -> (tokio::time::Instant, Phase) {
        let deadline = tokio::time::Instant::from_std(deadline);
        if !self.waited.load(Ordering::Relaxed) {
            // The first head: its first bytes were in before hyper started (see `server`).
            self.waited.store(true, Ordering::Relaxed);
            return (deadline, Phase::Head);
        }
        let phase = Phase::Idle {
            reads: self.shared.reads.load(Ordering::Relaxed),
        };
        let now = deadline.checked_sub(self.shared.head).unwrap_or(deadline);
        (now + self.keep_alive, phase)
    }
}

impl hyper::rt::Timer for HeaderTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    /// tokio's clock, which hyper then uses for its deadlines too (the same as the system's,
    /// except in tests that pause time).
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let (deadline, phase) = self.begin_wait(deadline);
        let taken = self.shared.idle.lock().unwrap_or_else(PoisonError::into_inner).take();
        let sleep = match taken {
            Some(mut sleep) => {
                move_deadline(&mut sleep, deadline);
                sleep
            }
            // The first request, or (not with hyper's HTTP/1 today) a second sleep at once.
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        Box::pin(Lent {
            sleep: Some(sleep),
            shared: self.shared.clone(),
            phase,
        })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<Lent>() {
            Some(lent) => {
                let (deadline, phase) = self.begin_wait(new_deadline);
                let lent = lent.get_mut();
                lent.phase = phase;
                if let Some(sleep) = lent.sleep.as_mut() {
                    move_deadline(sleep, deadline);
                }
            }
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// Moves a kept sleep to `deadline`. Later than before (the usual case: every request's deadline
/// is) is one atomic store while the sleep stays filed in tokio's timer wheel; equal is nothing.
fn move_deadline(sleep: &mut TokioSleep, deadline: tokio::time::Instant) {
    if sleep.deadline() != deadline {
        sleep.as_mut().reset(deadline);
    }
}

/// Where a wait for a head stands.
#[derive(Clone, Copy)]
enum Phase {
    /// Nothing of the next request yet (`reads` is the count when the wait began): keep-alive.
    Idle { reads: u64 },
    /// The head has begun arriving: `header_read_timeout` applies.
    Head,
}

/// The connection's sleep, held by one request until hyper drops it.
struct Lent {
    /// Always `Some` until dropped.
    sleep: Option<TokioSleep>,
    shared: Arc<Shared>,
    phase: Phase,
}

impl Future for Lent {
    type Output = ();

    /// hyper polls this after every round of reads that left the head incomplete, so a head's
    /// first bytes are seen here right after they arrive.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(sleep) = this.sleep.as_mut() else {
            return Poll::Ready(());
        };
        if let Phase::Idle { reads } = this.phase
            && this.shared.reads.load(Ordering::Relaxed) != reads
        {
            move_deadline(sleep, tokio::time::Instant::now() + this.shared.head);
            this.phase = Phase::Head;
        }
        sleep.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for Lent {}

impl Drop for Lent {
    fn drop(&mut self) {
        let mut idle = self.shared.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.is_none() {
            *idle = self.sleep.take();
        }
    }
}

/// A connection's reader that counts the reads bringing bytes, for its [`HeaderTimer`].
pub struct CountReads<I> {
    io: I,
    shared: Arc<Shared>,
}

impl<I: AsyncRead + Unpin> AsyncRead for CountReads<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            // The only writer, so no read-modify-write instruction is needed.
            let reads = &this.shared.reads;
            reads.store(reads.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for CountReads<I> {
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
    use hyper::rt::Timer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);
    const KEEP_ALIVE: Duration = Duration::from_secs(60);

    /// hyper's first wait, then the head it waited for is in: the sleep goes home.
    fn after_first_head() -> HeaderTimer {
        let timer = HeaderTimer::new(TIMEOUT, KEEP_ALIVE);
        drop(timer.sleep(TIMEOUT));
        assert!(timer.shared.idle.lock().unwrap().is_some(), "the sleep went home");
        timer
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_head_gets_the_header_timeout() {
        let timer = HeaderTimer::new(TIMEOUT, KEEP_ALIVE);
        let started = tokio::time::Instant::now();
        timer.sleep(TIMEOUT).await;
        assert_about(started.elapsed(), TIMEOUT);
    }

    /// The wait after an answer is keep-alive idling until the client sends something.
    #[tokio::test(start_paused = true)]
    async fn later_waits_idle_for_the_keep_alive_timeout() {
        let timer = after_first_head();
        let started = tokio::time::Instant::now();
        timer.sleep(TIMEOUT).await;
        assert_about(started.elapsed(), KEEP_ALIVE);
    }

    /// A slow head after a long quiet still has only the header timeout from its first bytes.
    #[tokio::test(start_paused = true)]
    async fn a_head_that_begins_gets_the_header_timeout_from_its_first_bytes() {
        let timer = after_first_head();
        let mut sleep = timer.sleep(TIMEOUT);
        assert!(!is_ready(&mut sleep));
        tokio::time::advance(TIMEOUT * 2).await;
        assert!(!is_ready(&mut sleep), "idle, not a slow head");
        timer.shared.reads.fetch_add(1, Ordering::Relaxed);
        let first_bytes = tokio::time::Instant::now();
        assert!(!is_ready(&mut sleep));
        sleep.await;
        assert_about(first_bytes.elapsed(), TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_that_passed_while_lent_out_still_fires() {
        let timer = HeaderTimer::new(TIMEOUT, KEEP_ALIVE);
        let mut sleep = timer.sleep(TIMEOUT);
        tokio::time::advance(TIMEOUT * 2).await;
        assert!(is_ready(&mut sleep));
    }

    /// hyper resets a sleep it kept to begin another wait: that wait starts idle too.
    #[tokio::test(start_paused = true)]
    async fn reset_begins_a_new_wait_on_the_lent_sleep() {
        let timer = HeaderTimer::new(TIMEOUT, KEEP_ALIVE);
        let mut sleep = timer.sleep(TIMEOUT);
        tokio::time::advance(TIMEOUT / 2).await;
        let started = tokio::time::Instant::now();
        timer.reset(&mut sleep, timer.now() + TIMEOUT);
        tokio::time::advance(KEEP_ALIVE - Duration::from_millis(2)).await;
        assert!(!is_ready(&mut sleep));
        sleep.await;
        assert_about(started.elapsed(), KEEP_ALIVE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_sleep_at_once_is_independent() {
        let timer = HeaderTimer::new(TIMEOUT, KEEP_ALIVE);
        let _first = timer.sleep(TIMEOUT * 30);
        let started = tokio::time::Instant::now();
        timer.sleep(TIMEOUT).await;
        assert_about(started.elapsed(), KEEP_ALIVE);
    }

    /// Only reads that bring bytes count; the end of the stream does not.
    #[tokio::test]
    async fn count_reads_counts_reads_with_bytes() {
        let timer = HeaderTimer::new(TIMEOUT, KEEP_ALIVE);
        let (mut client, server) = tokio::io::duplex(64);
        let mut reader = timer.count_reads(server);
        client.write_all(b"GET").await.expect("write");
        let mut buf = [0u8; 16];
        assert_eq!(reader.read(&mut buf).await.expect("read"), 3);
        assert_eq!(timer.shared.reads.load(Ordering::Relaxed), 1);
        drop(client);
        assert_eq!(reader.read(&mut buf).await.expect("read"), 0);
        assert_eq!(timer.shared.reads.load(Ordering::Relaxed), 1);
    }

    /// tokio rounds deadlines up to its next millisecond tick.
    fn assert_about(elapsed: Duration, expected: Duration) {
        let tick = Duration::from_millis(1);
        assert!(elapsed >= expected && elapsed <= expected + tick, "{elapsed:?}");
    }

    fn is_ready(sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>) -> bool {
        let waker = std::task::Waker::noop();
        sleep.as_mut().poll(&mut Context::from_waker(waker)).is_ready()
    }
}

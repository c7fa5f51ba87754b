//! hyper's HTTP/1 header-read timer, one per connection, which also keeps idle keep-alive
//! connections for `idle_timeout` and releases hyper's hold on the quiet ones.
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
//!
//! hyper keeps a connection's read and write buffers (8 KiB each) and its request future's box for
//! as long as the connection is open, so 10,000 quiet keep-alive connections held 278 MB
//! (`scripts/bench-gateway.sh`), where nginx, which frees a connection's buffers while it idles,
//! held 10 MB. So once a kept-alive connection has been quiet for `header_read_timeout` (when that
//! is shorter than `idle_timeout`), [`CountReads`] ends the stream for hyper, which closes its side
//! of the connection as it would for a client that left, and shuts it down: that shutdown parks
//! the socket in [`Parked`] instead, unclosed, for the server to wait on with nothing of hyper's
//! for the rest of `idle_timeout`. Its next bytes start hyper afresh. The wait is
//! `header_read_timeout` because it is what a head may take: bytes hyper read but could not parse
//! yet (half a pipelined head) would be refused here, as they would be after that long anyway.
//! A client that is not reading its last answer is not released: hyper still holds what the
//! socket would not take.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

type TokioSleep = Pin<Box<tokio::time::Sleep>>;

/// Give each connection its own: the sleep it lends is that connection's.
pub struct HeaderTimer {
    shared: Arc<Shared>,
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
    /// How long a kept-alive connection may wait for the next request to begin.
    keep_alive: Duration,
    /// The last write did not take all it was given: hyper holds unsent bytes (see [`CountReads`]).
    write_blocked: AtomicBool,
    /// The connection has been quiet long enough: [`CountReads`] ends hyper's stream and parks it.
    release: AtomicBool,
}

impl HeaderTimer {
    /// `head` must be the `header_read_timeout` hyper is given with this timer.
    pub fn new(head: Duration, keep_alive: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                idle: Mutex::new(None),
                reads: AtomicU64::new(0),
                head,
                keep_alive,
                write_blocked: AtomicBool::new(false),
                release: AtomicBool::new(false),
            }),
            waited: AtomicBool::new(false),
        }
    }

    /// The connection's reader, counting the reads this timer watches for a head's first bytes,
    /// and where it leaves the connection if it releases it.
    pub fn count_reads<I>(&self, io: I) -> (CountReads<I>, Parked<I>) {
        let parked = Parked(Arc::new(Mutex::new(None)));
        let reader = CountReads {
            io: Some(io),
            shared: self.shared.clone(),
            parked: parked.clone(),
        };
        (reader, parked)
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
        let (head, keep_alive) = (self.shared.head, self.shared.keep_alive);
        let phase = Phase::Idle {
            reads: self.shared.reads.load(Ordering::Relaxed),
            release: keep_alive > head,
        };
        let now = deadline.checked_sub(head).unwrap_or(deadline);
        (now + if keep_alive > head { head } else { keep_alive }, phase)
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
    /// With `release`, the deadline is the release (`header_read_timeout` in), else the close.
    Idle { reads: u64, release: bool },
    /// The head has begun arriving: `header_read_timeout` applies.
    Head,
    /// Released: hyper is ending its side of the connection, and this sleep has no more to say.
    Released,
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
        let shared = &this.shared;
        match this.phase {
            Phase::Idle { reads, .. } if shared.reads.load(Ordering::Relaxed) != reads => {
                move_deadline(sleep, tokio::time::Instant::now() + shared.head);
                this.phase = Phase::Head;
            }
            Phase::Released => return Poll::Pending,
            _ => {}
        }
        ready!(sleep.as_mut().poll(cx));
        let Phase::Idle { reads, release: true } = this.phase else {
            return Poll::Ready(());
        };
        if shared.write_blocked.load(Ordering::Relaxed) {
            // hyper holds bytes the client has not taken: idle on, to the close.
            let close = sleep.deadline() - shared.head + shared.keep_alive;
            move_deadline(sleep, close);
            this.phase = Phase::Idle { reads, release: false };
            return sleep.as_mut().poll(cx);
        }
        shared.release.store(true, Ordering::Relaxed);
        this.phase = Phase::Released;
        // hyper reads again on this wake-up, and finds the end of the stream (see `CountReads`).
        cx.waker().wake_by_ref();
        Poll::Pending
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

/// Where a released connection waits, unclosed, for the server to take it back.
pub struct Parked<I>(Arc<Mutex<Option<I>>>);

impl<I> Clone for Parked<I> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<I> Parked<I> {
    /// The connection, if hyper let go of it by releasing it rather than by closing it.
    pub fn take(&self) -> Option<I> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// A connection's reader that counts the reads bringing bytes, for its [`HeaderTimer`]; it notes
/// whether hyper's last write went out whole, and releases the connection when the timer says.
pub struct CountReads<I> {
    /// `None` once parked.
    io: Option<I>,
    shared: Arc<Shared>,
    parked: Parked<I>,
}

impl<I> CountReads<I> {
    fn io(&mut self) -> std::io::Result<Pin<&mut I>>
    where
        I: Unpin,
    {
        match self.io.as_mut() {
            Some(io) => Ok(Pin::new(io)),
            None => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    /// Notes whether hyper's write went out whole: if not, hyper keeps the rest.
    fn wrote(&self, polled: &Poll<std::io::Result<usize>>, len: usize) {
        let whole = matches!(polled, Poll::Ready(Ok(n)) if *n == len);
        self.shared.write_blocked.store(!whole, Ordering::Relaxed);
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for CountReads<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.shared.release.load(Ordering::Relaxed) {
            // The end of the stream, to hyper; the socket itself is parked at the shutdown.
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = this.io()?.poll_read(cx, buf);
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
        let this = self.get_mut();
        let polled = this.io()?.poll_write(cx, buf);
        this.wrote(&polled, buf.len());
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = this.io()?.poll_write_vectored(cx, bufs);
        this.wrote(&polled, bufs.iter().map(|b| b.len()).sum());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(I::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().io()?.poll_flush(cx)
    }

    /// A released connection is flushed and parked instead of shut down.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.shared.release.load(Ordering::Relaxed) {
            return this.io()?.poll_shutdown(cx);
        }
        if this.io.is_some() {
            ready!(this.io()?.poll_flush(cx))?;
            *this.parked.0.lock().unwrap_or_else(PoisonError::into_inner) = this.io.take();
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use hyper::rt::Timer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);
    const KEEP_ALIVE: Duration = Duration::from_secs(60);
    /// Shorter than `TIMEOUT`: such a connection is never released, it idles to its close.
    const SHORT_KEEP_ALIVE: Duration = Duration::from_secs(5);

    /// hyper's first wait, then the head it waited for is in: the sleep goes home.
    fn after_first_head(keep_alive: Duration) -> HeaderTimer {
        let timer = HeaderTimer::new(TIMEOUT, keep_alive);
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
        let timer = after_first_head(SHORT_KEEP_ALIVE);
        let started = tokio::time::Instant::now();
        timer.sleep(TIMEOUT).await;
        assert_about(started.elapsed(), SHORT_KEEP_ALIVE);
    }

    /// Quiet for the header timeout, a kept-alive connection is released: hyper reads the end of
    /// its stream, and its shutdown parks the connection, unclosed, with everything written.
    #[tokio::test(start_paused = true)]
    async fn a_quiet_connection_is_released_and_parked_open() {
        let timer = after_first_head(KEEP_ALIVE);
        let (mut client, server) = tokio::io::duplex(64);
        let (mut reader, parked) = timer.count_reads(server);
        reader.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.expect("write");
        let mut sleep = timer.sleep(TIMEOUT);
        tokio::time::advance(TIMEOUT - Duration::from_millis(2)).await;
        assert!(!is_ready(&mut sleep));
        assert!(!timer.shared.release.load(Ordering::Relaxed));
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(!is_ready(&mut sleep), "a release is not a timeout");
        assert!(timer.shared.release.load(Ordering::Relaxed));
        let mut buf = [0u8; 16];
        assert_eq!(reader.read(&mut buf).await.expect("read"), 0, "hyper sees the end");
        reader.shutdown().await.expect("shutdown");
        assert!(parked.take().is_some(), "parked, not closed");
        let mut answer = [0u8; 19];
        client.read_exact(&mut answer).await.expect("the answer went out");
    }

    /// hyper still holds bytes a client has not taken: that connection idles on to its close.
    #[tokio::test(start_paused = true)]
    async fn a_connection_whose_client_is_not_reading_is_not_released() {
        let timer = after_first_head(KEEP_ALIVE);
        timer.shared.write_blocked.store(true, Ordering::Relaxed);
        let started = tokio::time::Instant::now();
        timer.sleep(TIMEOUT).await;
        assert_about(started.elapsed(), KEEP_ALIVE);
        assert!(!timer.shared.release.load(Ordering::Relaxed));
    }

    /// Half a write leaves the rest in hyper's buffer; a whole one does not.
    #[tokio::test]
    async fn count_reads_notes_writes_that_did_not_go_out_whole() {
        let timer = HeaderTimer::new(TIMEOUT, KEEP_ALIVE);
        let (_client, server) = tokio::io::duplex(4);
        let (mut writer, _) = timer.count_reads(server);
        assert_eq!(writer.write(b"ab").await.expect("write"), 2);
        assert!(!timer.shared.write_blocked.load(Ordering::Relaxed));
        assert_eq!(writer.write(b"cdef").await.expect("write"), 2);
        assert!(timer.shared.write_blocked.load(Ordering::Relaxed));
    }

    /// A slow head after a long quiet still has only the header timeout from its first bytes.
    #[tokio::test(start_paused = true)]
    async fn a_head_that_begins_gets_the_header_timeout_from_its_first_bytes() {
        let timer = after_first_head(KEEP_ALIVE);
        let mut sleep = timer.sleep(TIMEOUT);
        assert!(!is_ready(&mut sleep));
        tokio::time::advance(TIMEOUT / 2).await;
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
        let timer = HeaderTimer::new(TIMEOUT, SHORT_KEEP_ALIVE);
        let mut sleep = timer.sleep(TIMEOUT);
        tokio::time::advance(TIMEOUT / 2).await;
        let started = tokio::time::Instant::now();
        timer.reset(&mut sleep, timer.now() + TIMEOUT);
        tokio::time::advance(SHORT_KEEP_ALIVE - Duration::from_millis(2)).await;
        assert!(!is_ready(&mut sleep));
        sleep.await;
        assert_about(started.elapsed(), SHORT_KEEP_ALIVE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_sleep_at_once_is_independent() {
        let timer = HeaderTimer::new(TIMEOUT, SHORT_KEEP_ALIVE);
        let _first = timer.sleep(TIMEOUT * 30);
        let started = tokio::time::Instant::now();
        timer.sleep(TIMEOUT).await;
        assert_about(started.elapsed(), SHORT_KEEP_ALIVE);
    }

    /// Only reads that bring bytes count; the end of the stream does not.
    #[tokio::test]
    async fn count_reads_counts_reads_with_bytes() {
        let timer = HeaderTimer::new(TIMEOUT, KEEP_ALIVE);
        let (mut client, server) = tokio::io::duplex(64);
        let (mut reader, _) = timer.count_reads(server);
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

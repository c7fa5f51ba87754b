//! hyper's HTTP/1 header-read timer, one per connection.
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
//! deadline. The deadline only ever moves later, which tokio does with one atomic store while the
//! sleep is still in the wheel; when the old deadline comes round, tokio files it again under the
//! new one. The cost is at most one spurious wake-up of the connection per timeout period.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

type TokioSleep = Pin<Box<tokio::time::Sleep>>;

/// Give each connection its own: the sleep it lends is that connection's.
#[derive(Default)]
pub struct HeaderTimer {
    /// The connection's sleep while no request holds it.
    idle: Arc<Mutex<Option<TokioSleep>>>,
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
        let deadline = tokio::time::Instant::from_std(deadline);
        let taken = self.idle.lock().unwrap_or_else(PoisonError::into_inner).take();
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
            home: self.idle.clone(),
        })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<Lent>() {
            Some(lent) => {
                if let Some(sleep) = lent.get_mut().sleep.as_mut() {
                    move_deadline(sleep, tokio::time::Instant::from_std(new_deadline));
                }
            }
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

fn move_deadline(sleep: &mut TokioSleep, deadline: tokio::time::Instant) {
    if sleep.deadline() != deadline {
        sleep.as_mut().reset(deadline);
    }
}

/// The connection's sleep, held by one request until hyper drops it.
struct Lent {
    /// Always `Some` until dropped.
    sleep: Option<TokioSleep>,
    home: Arc<Mutex<Option<TokioSleep>>>,
}

impl Future for Lent {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut().sleep.as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl hyper::rt::Sleep for Lent {}

impl Drop for Lent {
    fn drop(&mut self) {
        let mut idle = self.home.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.is_none() {
            *idle = self.sleep.take();
        }
    }
}

#[cfg(test)]
mod tests {
    use hyper::rt::Timer;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// The second request's deadline, not the first's, though the first's was in the wheel.
    #[tokio::test(start_paused = true)]
    async fn each_request_gets_its_own_deadline_from_the_one_sleep() {
        let timer = HeaderTimer::default();
        let mut first = timer.sleep(TIMEOUT);
        assert!(!is_ready(&mut first));
        tokio::time::advance(TIMEOUT / 2).await;
        drop(first);
        assert!(timer.idle.lock().unwrap().is_some(), "the sleep went home");

        let started = tokio::time::Instant::now();
        timer.sleep(TIMEOUT).await;
        assert_about(started.elapsed(), TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_that_passed_while_lent_out_still_fires() {
        let timer = HeaderTimer::default();
        let mut sleep = timer.sleep(TIMEOUT);
        tokio::time::advance(TIMEOUT * 2).await;
        assert!(is_ready(&mut sleep));
    }

    #[tokio::test(start_paused = true)]
    async fn reset_moves_the_lent_sleep() {
        let timer = HeaderTimer::default();
        let mut sleep = timer.sleep(TIMEOUT);
        let later = timer.now() + TIMEOUT * 3;
        timer.reset(&mut sleep, later);
        tokio::time::advance(TIMEOUT * 2).await;
        assert!(!is_ready(&mut sleep));
        tokio::time::advance(TIMEOUT).await;
        assert!(is_ready(&mut sleep));
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_sleep_at_once_is_independent() {
        let timer = HeaderTimer::default();
        let _first = timer.sleep(TIMEOUT * 3);
        let started = tokio::time::Instant::now();
        timer.sleep(TIMEOUT).await;
        assert_about(started.elapsed(), TIMEOUT);
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

//! The request and upstream timeouts, and the sleeps an HTTP/1 connection keeps for them.
//!
//! tokio's `timeout` files a timer in the runtime's wheel the first time its future waits and
//! takes it out again when dropped: a lock and a wheel update each way, which a proxied request
//! paid for twice. hyper runs an HTTP/1 connection's requests one at a time inside the
//! connection's task, so there each timeout borrows a sleep the connection keeps (see
//! [`with_connection_sleeps`]) and moves its deadline. Every request's deadline is later than the
//! one before, and moving a filed sleep's deadline later is one atomic store. HTTP/2 streams run
//! in tasks of their own and get a sleep each. A kept sleep that comes due while no request holds
//! it wakes its connection once, for nothing.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// Which of a connection's sleeps a timeout borrows; a request's two timeouts nest.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `limits.request_timeout`, over the whole request.
    Request,
    /// `upstream.timeout`, for the app's answer.
    Upstream,
}

type Kept = [Option<Pin<Box<Sleep>>>; 2];

tokio::task_local! {
    /// `Some` in an HTTP/1 connection's task, `None` in an HTTP/2 stream's: every task that runs
    /// timeouts says which it is, so a missing scope is a bug, caught in debug builds.
    static KEPT: RefCell<Option<Kept>>;
}

/// Runs an HTTP/1 connection (its whole future) with sleeps kept for its requests' timeouts.
pub async fn with_connection_sleeps<F: Future>(connection: F) -> F::Output {
    KEPT.scope(RefCell::new(Some(Kept::default())), connection).await
}

/// Runs a task whose timeouts get a sleep each: an HTTP/2 stream, which has a task of its own.
pub async fn without_kept_sleeps<F: Future>(task: F) -> F::Output {
    KEPT.scope(RefCell::new(None), task).await
}

/// The kept sleeps of this task, if it keeps any.
fn with_kept<R>(f: impl FnOnce(&mut Kept) -> R) -> Option<R> {
    let outcome = KEPT.try_with(|kept| kept.borrow_mut().as_mut().map(f));
    debug_assert!(
        outcome.is_ok(),
        "a timeout outside with_connection_sleeps and without_kept_sleeps: its task keeps no sleeps by accident"
    );
    outcome.ok().flatten()
}

/// `future`'s output, or `None` once `deadline` has passed.
pub fn timeout_at<F: Future>(kind: Kind, deadline: Instant, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: Lent {
            kind,
            deadline,
            sleep: None,
        },
    }
}

pin_project_lite::pin_project! {
    /// See [`timeout_at`].
    pub struct Timeout<F> {
        #[pin]
        future: F,
        sleep: Lent,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Some(output));
        }
        this.sleep.poll(cx).map(|()| None)
    }
}

/// A timeout's sleep, taken on its first wait (a request that never waits touches no timer) and
/// handed back to the connection when the timeout is dropped.
struct Lent {
    kind: Kind,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Lent {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let (kind, deadline) = (self.kind, self.deadline);
        let sleep = self.sleep.get_or_insert_with(|| borrow(kind, deadline));
        sleep.as_mut().poll(cx)
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let Some(sleep) = self.sleep.take() else {
            return;
        };
        // Outside an HTTP/1 connection's task there is nowhere to keep it, and it is dropped.
        let kind = self.kind as usize;
        with_kept(|kept| {
            if kept[kind].is_none() {
                kept[kind] = Some(sleep);
            }
        });
    }
}

/// The connection's sleep of this kind, due at `deadline`, or a new one.
fn borrow(kind: Kind, deadline: Instant) -> Pin<Box<Sleep>> {
    let kept = with_kept(|kept| kept[kind as usize].take()).flatten();
    match kept {
        Some(mut sleep) => {
            crate::timer::move_deadline(&mut sleep, deadline);
            sleep
        }
        None => Box::pin(tokio::time::sleep_until(deadline)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// Whether a timeout of `after` over a future that never finishes has fired once `wait` has
    /// passed (on the paused clock).
    async fn fired(kind: Kind, after: Duration, wait: Duration) -> bool {
        let timeout = timeout_at(kind, Instant::now() + after, std::future::pending::<()>());
        tokio::select! {
            output = timeout => output.is_none(),
            () = tokio::time::sleep(wait) => false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_request_gets_its_own_deadline_from_the_kept_sleep() {
        with_connection_sleeps(async {
            assert!(!fired(Kind::Request, 10 * SECOND, 9 * SECOND).await, "fired early");
            // The kept sleep now holds the first deadline (1 s from now); the next one is later.
            assert!(
                !fired(Kind::Request, 5 * SECOND, 4 * SECOND).await,
                "fired at the old deadline"
            );
            assert!(fired(Kind::Request, 5 * SECOND, 6 * SECOND).await, "did not fire");
            // Earlier than the kept sleep's last deadline, too.
            assert!(
                fired(Kind::Request, SECOND, 2 * SECOND).await,
                "did not fire at an earlier deadline"
            );
            // The upstream sleep is separate, and nests inside the request's.
            let inner = timeout_at(Kind::Upstream, Instant::now() + SECOND, std::future::pending::<()>());
            let outer = timeout_at(Kind::Request, Instant::now() + 10 * SECOND, inner);
            assert_eq!(outer.await, Some(None), "the upstream timeout fired first");
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_finished_future_wins_and_a_stream_gets_sleeps_of_its_own() {
        without_kept_sleeps(async {
            let done = timeout_at(Kind::Request, Instant::now() + SECOND, async { 7 });
            assert_eq!(done.await, Some(7));
            assert!(fired(Kind::Upstream, SECOND, 2 * SECOND).await);
            assert!(!fired(Kind::Upstream, 3 * SECOND, 2 * SECOND).await);
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    #[cfg(debug_assertions)]
    async fn a_timeout_in_a_task_that_did_not_say_how_it_keeps_sleeps_is_a_bug() {
        let task = tokio::spawn(timeout_at(
            Kind::Request,
            Instant::now() + SECOND,
            std::future::pending::<()>(),
        ));
        tokio::time::sleep(2 * SECOND).await;
        let failed = task.await.expect_err("the debug assertion fired");
        assert!(failed.is_panic());
    }
}

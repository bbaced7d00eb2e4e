//! How the server closes connections: one connection at a time (a
//! [`KillSwitch`]: replaced, slow consumer, ...) or all at once (the
//! [`ShutdownSignal`]).
//!
//! Both are a flag that a door reads without taking a lock, beside a
//! cancellation token that wakes the door's task. A door's session loop
//! watches its kill switch on every turn; with the flags that watch is an
//! atomic load, where polling the token's future took its mutex and
//! re-registered with its `Notify` each time.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::error::ErrorCode;

/// The server-wide shutdown: wakes every connection's task and sets a flag
/// their kill switches read.
#[derive(Clone, Debug, Default)]
pub(crate) struct ShutdownSignal {
    token: CancellationToken,
    triggered: Arc<AtomicBool>,
}

impl ShutdownSignal {
    /// Closes every connection, present and future, with `SHUTTING_DOWN`.
    pub(crate) fn trigger(&self) {
        // The flag first: a task woken by the token must see it.
        self.triggered.store(true, Ordering::Release);
        self.token.cancel();
    }

    /// Whether [`ShutdownSignal::trigger`] was called.
    pub(crate) fn is_triggered(&self) -> bool {
        self.triggered.load(Ordering::Acquire)
    }

    /// Resolves once the shutdown is triggered.
    pub(crate) async fn triggered(&self) {
        self.token.cancelled().await;
    }

    /// A kill switch for one new connection.
    pub(crate) fn new_kill_switch(&self) -> KillSwitch {
        KillSwitch {
            token: self.token.child_token(),
            shutdown: Arc::clone(&self.triggered),
            killed: AtomicBool::new(false),
            reason: OnceLock::new(),
        }
    }
}

/// One connection's kill switch.
#[derive(Debug)]
pub(crate) struct KillSwitch {
    /// A child of the shutdown's token: cancelled by either.
    token: CancellationToken,
    shutdown: Arc<AtomicBool>,
    killed: AtomicBool,
    /// The reason, and the message an operator gave (a kick) if any.
    reason: OnceLock<(ErrorCode, Option<Arc<str>>)>,
}

impl KillSwitch {
    /// Closes the connection; the first reason wins.
    pub(crate) fn kill(&self, reason: ErrorCode) {
        self.kill_saying(reason, None);
    }

    /// Closes the connection with a message of its own for the farewell
    /// (an operator's reason for a kick); the first reason wins.
    pub(crate) fn kill_saying(&self, reason: ErrorCode, message: Option<Arc<str>>) {
        let _ = self.reason.set((reason, message));
        // The flag before the wake-up, as in `ShutdownSignal::trigger`.
        self.killed.store(true, Ordering::Release);
        self.token.cancel();
    }

    /// Whether the connection was killed or the server is shutting down.
    pub(crate) fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire) || self.shutdown.load(Ordering::Acquire)
    }

    /// Why, once killed: the reason given, or `SHUTTING_DOWN` when the
    /// shutdown came first.
    pub(crate) fn reason(&self) -> Option<ErrorCode> {
        if !self.is_killed() {
            return None;
        }
        Some(
            self.reason
                .get()
                .map_or(ErrorCode::ShuttingDown, |(code, _)| *code),
        )
    }

    /// The message given with the reason, if any (a kick's).
    pub(crate) fn message(&self) -> Option<Arc<str>> {
        self.reason.get().and_then(|(_, message)| message.clone())
    }

    /// Resolves once the connection is killed.
    pub(crate) fn killed(self: &Arc<Self>) -> Killed {
        Killed {
            switch: Arc::clone(self),
            wait: self.token.clone().cancelled_owned(),
            registered: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`KillSwitch::killed`]. Once it has registered a
    /// task's waker with the token, polling it with the same waker only
    /// reads the flags: the token's wake-up comes after the flag is set, so
    /// a kill is never missed.
    pub(crate) struct Killed {
        switch: Arc<KillSwitch>,
        #[pin]
        wait: WaitForCancellationFutureOwned,
        // The waker the token will wake, once registered.
        registered: Option<Waker>,
    }
}

impl Future for Killed {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let same_waker = this
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()));
        if same_waker && !this.switch.is_killed() {
            return Poll::Pending;
        }
        match this.wait.poll(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => {
                *this.registered = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_kill_wakes_a_waiting_task_with_its_reason() {
        let shutdown = ShutdownSignal::default();
        let switch = Arc::new(shutdown.new_kill_switch());
        let waiter = tokio::spawn({
            let switch = Arc::clone(&switch);
            async move {
                let mut killed = std::pin::pin!(switch.killed());
                // Polled (and registered) several times before the kill.
                for _ in 0..3 {
                    assert!(futures_util::poll!(killed.as_mut()).is_pending());
                    tokio::task::yield_now().await;
                }
                killed.await;
                switch.reason()
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(switch.reason(), None);
        switch.kill(ErrorCode::Replaced);
        switch.kill(ErrorCode::SlowConsumer);
        let reason = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("joined");
        assert_eq!(reason, Some(ErrorCode::Replaced));
    }

    #[tokio::test]
    async fn the_shutdown_kills_every_switch() {
        let shutdown = ShutdownSignal::default();
        let switches: Vec<_> = (0..3)
            .map(|_| Arc::new(shutdown.new_kill_switch()))
            .collect();
        let waiters: Vec<_> = switches
            .iter()
            .map(|switch| {
                let switch = Arc::clone(switch);
                tokio::spawn(async move { switch.killed().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(switches.iter().all(|switch| !switch.is_killed()));
        shutdown.trigger();
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("woken")
                .expect("joined");
        }
        assert!(shutdown.is_triggered());
        assert!(
            switches
                .iter()
                .all(|switch| switch.reason() == Some(ErrorCode::ShuttingDown))
        );
        // A switch made after the shutdown is killed from the start.
        let late = Arc::new(shutdown.new_kill_switch());
        assert!(late.is_killed());
        tokio::time::timeout(Duration::from_secs(5), late.killed())
            .await
            .expect("ready");
    }
}

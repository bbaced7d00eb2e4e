//! The door's side of a connection ([`SessionLink`]): the events to write,
//! the kill switch to watch, and the one close sequence ([`LastWords`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use super::{Attachment, Delivery};
use crate::core::error::ErrorCode;
use crate::core::event::Event;
use crate::sync::lock;
use crate::telemetry::metrics;

/// Records how long a relayed event waited in the outbox.
fn observed(delivery: Delivery) -> Delivery {
    if let Some(queued_at) = delivery.queued_at {
        metrics::relay_latency(queued_at.elapsed());
    }
    delivery
}

/// The door's side of a connection: the events to write and the kill switch
/// to watch.
#[derive(Debug)]
pub struct SessionLink {
    pub(super) attachment: Arc<Attachment>,
}

/// What a closed connection still gets: see [`SessionLink::last_words`].
#[derive(Debug)]
pub struct LastWords {
    /// Why the server closed it.
    pub code: ErrorCode,
    /// The events queued for it, in order.
    pub queued: Vec<Delivery>,
    /// The `error` that says why, written last (unsequenced); none for a
    /// drain, whose `reconnect` is already queued.
    pub farewell: Option<Event>,
}

impl Drop for SessionLink {
    /// The door is gone: nothing more can be queued for this connection.
    fn drop(&mut self) {
        self.attachment.outbox.close();
    }
}

impl SessionLink {
    /// The next event to write: a resume's replay first, then the outbox.
    pub async fn next_event(&mut self) -> Delivery {
        std::future::poll_fn(|cx| self.poll_next_event(cx)).await
    }

    /// Polls for the next event to write, for a door that is itself polled
    /// (the gRPC response stream): a resume's replay first, then the outbox.
    pub fn poll_next_event(&mut self, cx: &mut Context<'_>) -> Poll<Delivery> {
        if let Some(delivery) = self.take_preface() {
            return Poll::Ready(delivery);
        }
        self.attachment.outbox.poll_pop(cx).map(observed)
    }

    /// An event if one is ready (for batching writes).
    pub fn try_next_event(&mut self) -> Option<Delivery> {
        self.take_preface()
            .or_else(|| self.attachment.outbox.try_pop().map(observed))
    }

    fn take_preface(&self) -> Option<Delivery> {
        if !self.attachment.has_preface.load(Ordering::Acquire) {
            return None;
        }
        let mut preface = lock(&self.attachment.preface);
        let next = preface.pop_front();
        if preface.is_empty() {
            self.attachment.has_preface.store(false, Ordering::Release);
        }
        next
    }

    /// Resolves when the server closes this connection. Cheap to poll
    /// again and again from the same task.
    pub fn killed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.attachment.killed()
    }

    /// Whether an event is waiting to be written.
    pub fn has_queued_events(&self) -> bool {
        self.attachment.has_preface.load(Ordering::Acquire) || !self.attachment.outbox.is_empty()
    }

    /// Whether the server has closed this connection.
    pub fn is_killed(&self) -> bool {
        self.attachment.kill_switch.is_killed()
    }

    /// Closes the connection from the door's side (e.g. the transport's own
    /// send buffer is full: [`ErrorCode::SlowConsumer`]).
    pub fn kill(&self, reason: ErrorCode) {
        self.attachment.kill(reason);
    }

    /// Why the server closed the connection, once it has.
    pub fn kill_reason(&self) -> Option<ErrorCode> {
        self.attachment.kill_reason()
    }

    /// What a connection the server closed still gets, the one rule for
    /// every door (docs/PROTOCOL.md, "How sessions end"): the events
    /// already queued for it, unless its close drops them
    /// ([`ErrorCode::flushes_queue_on_close`]), then the farewell `error`.
    /// The door writes them, then its own close.
    pub fn last_words(&mut self) -> LastWords {
        let code = self.kill_reason().unwrap_or(ErrorCode::ShuttingDown);
        let queued = if code.flushes_queue_on_close() {
            std::iter::from_fn(|| self.try_next_event()).collect()
        } else {
            Vec::new()
        };
        let farewell = match (code, self.attachment.kill_switch.message()) {
            (ErrorCode::Draining, _) => None,
            (_, Some(message)) => Some(Event::Error {
                code,
                message: std::borrow::Cow::Owned(message.to_string()),
                id: None,
            }),
            (_, None) => Some(Event::farewell(code)),
        };
        LastWords {
            code,
            queued,
            farewell,
        }
    }

    pub(crate) fn attachment(&self) -> &Arc<Attachment> {
        &self.attachment
    }
}

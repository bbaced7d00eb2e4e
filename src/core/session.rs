//! A session's identity, its bounded outbox and its kill switch.
//!
//! The registry and the hub hold an `Arc<SessionHandle>`; the door that owns
//! the connection holds the matching [`SessionLink`] and writes whatever
//! arrives on it to the wire.

use std::fmt;
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::error::ErrorCode;
use super::event::Event;

/// A session id: 64 random bits, shown as 16 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(u64);

impl SessionId {
    /// A fresh random id.
    pub fn random() -> SessionId {
        SessionId(rand::random())
    }

    /// The raw number.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The door a session came through (for logs and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DoorKind {
    /// The gRPC bidirectional stream.
    Grpc,
    /// The JSON WebSocket at `/ws`.
    WebSocket,
    /// Socket.IO at `/socket.io/`.
    SocketIo,
}

impl DoorKind {
    /// `"grpc"`, `"ws"` or `"socketio"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            DoorKind::Grpc => "grpc",
            DoorKind::WebSocket => "ws",
            DoorKind::SocketIo => "socketio",
        }
    }
}

/// Why an event could not be handed to a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The session's outbox was full: it has been closed as a slow consumer.
    #[error("the receiving session could not keep up and was closed")]
    SlowConsumer,
    /// The session has ended.
    #[error("the receiving session has ended")]
    Gone,
}

/// The shared side of a live session: where events for it are queued.
#[derive(Debug)]
pub struct SessionHandle {
    id: SessionId,
    door: DoorKind,
    outbox: mpsc::Sender<Event>,
    kill_switch: CancellationToken,
    kill_reason: OnceLock<ErrorCode>,
}

impl SessionHandle {
    /// A handle and the door-side link for a new session. `capacity` bounds
    /// the outbox; `parent` is the server-wide shutdown token.
    pub(crate) fn new(
        door: DoorKind,
        capacity: usize,
        parent: &CancellationToken,
    ) -> (Arc<SessionHandle>, SessionLink) {
        let (outbox, events) = mpsc::channel(capacity.max(1));
        let kill_switch = parent.child_token();
        let handle = Arc::new(SessionHandle {
            id: SessionId::random(),
            door,
            outbox,
            kill_switch,
            kill_reason: OnceLock::new(),
        });
        let link = SessionLink {
            events,
            handle: Arc::clone(&handle),
        };
        (handle, link)
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The door the session uses.
    pub fn door(&self) -> DoorKind {
        self.door
    }

    /// Queues an event without waiting. A full outbox closes the session as a
    /// slow consumer (the documented policy: one slow reader never stalls
    /// another session and never grows memory).
    pub fn deliver(&self, event: Event) -> Result<(), DeliveryError> {
        match self.outbox.try_send(event) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.kill(ErrorCode::SlowConsumer);
                Err(DeliveryError::SlowConsumer)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(DeliveryError::Gone),
        }
    }

    /// Closes the session from the server side. The first reason wins.
    pub fn kill(&self, reason: ErrorCode) {
        let _ = self.kill_reason.set(reason);
        self.kill_switch.cancel();
    }

    /// Whether the session has been told to close.
    pub fn is_killed(&self) -> bool {
        self.kill_switch.is_cancelled()
    }

    /// The reason the session was killed, if it was.
    pub fn kill_reason(&self) -> Option<ErrorCode> {
        if !self.kill_switch.is_cancelled() {
            return None;
        }
        // A cancelled token without a reason was cancelled by its parent:
        // the server is shutting down.
        Some(
            self.kill_reason
                .get()
                .copied()
                .unwrap_or(ErrorCode::ShuttingDown),
        )
    }
}

/// The door's side of a session: the events to write and the kill switch to
/// watch.
#[derive(Debug)]
pub struct SessionLink {
    events: mpsc::Receiver<Event>,
    handle: Arc<SessionHandle>,
}

impl SessionLink {
    /// The next queued event. Never returns `None` while the session lives.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// A queued event if one is ready (for batching writes).
    pub fn try_next_event(&mut self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// Resolves when the server closes the session.
    pub fn killed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.handle.kill_switch.clone().cancelled_owned()
    }

    /// Whether the server has closed the session.
    pub fn is_killed(&self) -> bool {
        self.handle.is_killed()
    }

    /// Closes the session from the door's side (e.g. the transport's own
    /// send buffer is full: [`ErrorCode::SlowConsumer`]).
    pub fn kill(&self, reason: ErrorCode) {
        self.handle.kill(reason);
    }

    /// Why the server closed the session, once it has.
    pub fn kill_reason(&self) -> Option<ErrorCode> {
        self.handle.kill_reason()
    }
}

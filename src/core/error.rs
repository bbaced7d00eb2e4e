//! Error codes (the `code` of an `error` event) and the reasons a session ends.

use std::borrow::Cow;
use std::fmt;

/// The machine-readable code of an `error` event. The string forms are part
/// of the protocol (docs/PROTOCOL.md) and never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Malformed request: invalid JSON, unknown event, missing or bad field.
    BadRequest,
    /// The request needs a registered session.
    NotRegistered,
    /// `register` on a session that is already registered.
    AlreadyRegistered,
    /// A relay while the other role of the uid is absent.
    NoPeer,
    /// The authentication token is missing, expired, badly signed, of the
    /// wrong algorithm or has no subject.
    Unauthenticated,
    /// The authentication token does not allow this uid or role.
    Forbidden,
    /// The session neither registered nor resumed in time; it is closed.
    RegisterTimeout,
    /// The request is not allowed for this session's role (`syncto` from web).
    WrongRole,
    /// A newer session registered the same (uid, role); this one is closed.
    Replaced,
    /// A message exceeded the size limit.
    MessageTooLarge,
    /// A session could not keep up with the events addressed to it. The slow
    /// session is closed with this code, and the sender of every event that
    /// could not be queued receives it too.
    SlowConsumer,
    /// `resume` failed: unknown, expired, spent or replaced token, or the
    /// missed events are no longer retained. Register afresh.
    ResumeFailed,
    /// The client sends faster than it is allowed or than its session is
    /// served; the request was not processed.
    RateLimited,
    /// The server is shutting down; the session is closed.
    ShuttingDown,
    /// The server failed in a way that is not the client's fault.
    Internal,
    /// Multi-node deployments: the shared registry (Redis) or the peer's
    /// node cannot be reached, so the request was not carried out. The
    /// session stays open; retry later.
    Unavailable,
    /// An operator closed the session through the admin API; the message
    /// is the reason they gave. It cannot be resumed.
    Kicked,
    /// The node is draining (a rolling restart): the session was told
    /// `reconnect` and its connection closed; it waits, resumable, for the
    /// client to resume it on another node. Never sent as an `error`.
    Draining,
}

impl ErrorCode {
    /// Every code, in the order of docs/PROTOCOL.md.
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::BadRequest,
        ErrorCode::NotRegistered,
        ErrorCode::AlreadyRegistered,
        ErrorCode::NoPeer,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::RegisterTimeout,
        ErrorCode::WrongRole,
        ErrorCode::Replaced,
        ErrorCode::MessageTooLarge,
        ErrorCode::SlowConsumer,
        ErrorCode::ResumeFailed,
        ErrorCode::RateLimited,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
        ErrorCode::Kicked,
        ErrorCode::Draining,
    ];

    /// The wire form, e.g. `"NO_PEER"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::NotRegistered => "NOT_REGISTERED",
            ErrorCode::AlreadyRegistered => "ALREADY_REGISTERED",
            ErrorCode::NoPeer => "NO_PEER",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::RegisterTimeout => "REGISTER_TIMEOUT",
            ErrorCode::WrongRole => "WRONG_ROLE",
            ErrorCode::Replaced => "REPLACED",
            ErrorCode::MessageTooLarge => "MESSAGE_TOO_LARGE",
            ErrorCode::SlowConsumer => "SLOW_CONSUMER",
            ErrorCode::ResumeFailed => "RESUME_FAILED",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::ShuttingDown => "SHUTTING_DOWN",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Kicked => "KICKED",
            ErrorCode::Draining => "DRAINING",
        }
    }

    /// When the server closes a session with this code, whether the events
    /// already queued for it are written before the farewell
    /// ([`crate::core::Disconnect::flushes_queue`]).
    pub const fn flushes_queue_on_close(self) -> bool {
        self.disconnect().flushes_queue
    }

    /// Parses the wire form.
    pub fn parse(text: &str) -> Option<ErrorCode> {
        ErrorCode::ALL
            .into_iter()
            .find(|code| code.as_str() == text)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request the core (or a door's decoder) refused: a code and a
/// human-readable explanation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    /// What went wrong, for programs.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: Cow<'static, str>,
}

impl Rejection {
    /// A rejection with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Rejection {
            code,
            message: message.into(),
        }
    }

    /// A `BAD_REQUEST` rejection.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Rejection::new(ErrorCode::BadRequest, message)
    }
}

/// Why a session ended. Every end goes through [`crate::core::Session::end`]
/// (or its drop guard) with one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The client ended the session cleanly (close frame, half-close,
    /// Socket.IO disconnect packet).
    ClientClosed,
    /// The connection went away without a clean close (reset, EOF, cancelled
    /// stream, write failure, failed heartbeat). A registered session is
    /// then held away for the resume window instead of ending.
    ConnectionLost,
    /// The client broke the protocol in a way that ends the session (binary
    /// frame on the JSON door, invalid UTF-8, oversized message).
    ProtocolViolation(ErrorCode),
    /// The server closed the session: replaced, slow consumer or shutdown.
    Closed(ErrorCode),
    /// The session was away and nobody resumed it within the window.
    ResumeWindowExpired,
    /// The session's node died (its heartbeat expired) and another node
    /// reaped its binding: the reason its `pair.ended` and `session.ended`
    /// webhooks carry.
    NodeLost,
}

impl EndReason {
    /// A short label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            EndReason::ClientClosed => "client_closed",
            EndReason::ConnectionLost => "connection_lost",
            EndReason::ProtocolViolation(_) => "protocol_violation",
            EndReason::Closed(code) => code.disconnect().end_label,
            EndReason::ResumeWindowExpired => "resume_window_expired",
            EndReason::NodeLost => "node_lost",
        }
    }
}

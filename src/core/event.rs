//! What the server can say to a session, independent of the door.

use std::borrow::Cow;
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::command::{Relay, RequestId, Role, Uid};
use super::error::{ErrorCode, Rejection};
use super::ice::IceGrant;
use super::ids::SessionId;
use super::payload::JsonPayload;

/// The greeting text of `welcome`, as the seed sends it.
pub const WELCOME_MESSAGE: &str = "Welcome!";

/// An event addressed to one session.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// First event of every connection.
    Welcome {
        /// The session's id.
        session_id: SessionId,
        /// The secret that lets a new connection take this session over
        /// (`None` when resumption is disabled). Never logged.
        resume_token: Option<Arc<str>>,
    },
    /// A resume succeeded: this connection now serves the session below;
    /// the events it missed follow.
    Resumed {
        /// The resumed session's id.
        session_id: SessionId,
        /// Its uid.
        uid: Uid,
        /// Its role.
        role: Role,
        /// A fresh resume token (the one used is spent).
        resume_token: Arc<str>,
        /// How many missed events follow.
        replayed: usize,
        /// Fresh ICE servers (`None` when none are configured).
        ice_servers: Option<Arc<IceGrant>>,
    },
    /// The peer's connection dropped; it may come back within the window.
    PeerAway,
    /// The peer is back (resumed, or replaced by a new session).
    PeerBack,
    /// Answer to `register`.
    Registered {
        /// The registered uid.
        uid: Uid,
        /// The registered role.
        role: Role,
        /// Whether the other role of the uid is present.
        peer_present: bool,
        /// The session's ICE servers (`None` when none are configured).
        ice_servers: Option<Arc<IceGrant>>,
    },
    /// Answer to `iceservers`: a fresh list (empty when none are configured).
    IceServers(Arc<IceGrant>),
    /// Both roles are present: the app should start synchronising.
    SyncFrom,
    /// An event relayed from the peer.
    Relayed(Relay),
    /// The server's addresses.
    IpAddrs(Arc<[Ipv4Addr]>),
    /// The peer left.
    ByeBye,
    /// Data the app's backend pushed to this session through the admin API.
    Notice(JsonPayload),
    /// The node is draining: resume this session with `resume_token` on
    /// another node after waiting `after_ms` (the connection closes next).
    Reconnect {
        /// The session's current resume token.
        resume_token: Arc<str>,
        /// How long the client waits before it reconnects (spread by the
        /// node so that its sessions do not all arrive at once).
        after_ms: u64,
    },
    /// The request with this id took effect.
    Ack {
        /// The request id.
        id: RequestId,
    },
    /// A request failed, or the session is being closed.
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// Explanation for people.
        message: Cow<'static, str>,
        /// The failed request's id, if it had one.
        id: Option<RequestId>,
    },
}

impl Event {
    /// An `error` event for a rejection.
    pub fn error(rejection: Rejection, id: Option<RequestId>) -> Event {
        Event::Error {
            code: rejection.code,
            message: rejection.message,
            id,
        }
    }

    /// The last event a session receives when the server closes it.
    pub fn farewell(code: ErrorCode) -> Event {
        Event::Error {
            code,
            message: Cow::Borrowed(code.disconnect().farewell),
            id: None,
        }
    }

    /// Whether the event takes a sequence number (and so is kept for a
    /// resume and handed over with its session): every event but the
    /// greetings of a connection and the drain's `reconnect`.
    pub const fn is_sequenced(&self) -> bool {
        match self {
            Event::Welcome { .. } | Event::Resumed { .. } | Event::Reconnect { .. } => false,
            Event::PeerAway
            | Event::PeerBack
            | Event::Registered { .. }
            | Event::IceServers(_)
            | Event::SyncFrom
            | Event::Relayed(_)
            | Event::IpAddrs(_)
            | Event::ByeBye
            | Event::Notice(_)
            | Event::Ack { .. }
            | Event::Error { .. } => true,
        }
    }

    /// The protocol name of the event, as JSON doors spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Welcome { .. } => "welcome",
            Event::Resumed { .. } => "resumed",
            Event::PeerAway => "peer_away",
            Event::PeerBack => "peer_back",
            Event::Registered { .. } => "registered",
            Event::SyncFrom => "syncfrom",
            Event::Relayed(relay) => relay.kind().event_name(),
            Event::IpAddrs(_) => "ipaddr",
            Event::IceServers(_) => "iceservers",
            Event::ByeBye => "byebye",
            Event::Notice(_) => "notice",
            Event::Reconnect { .. } => "reconnect",
            Event::Ack { .. } => "ack",
            Event::Error { .. } => "error",
        }
    }
}

//! The ids of sessions and doors, which events and sessions both name
//! (so neither module imports the other for them).

use std::fmt;

use crate::telemetry::metrics::Label;

/// A session id: 64 random bits, shown as 16 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(u64);

impl SessionId {
    /// A fresh random id.
    pub fn random() -> SessionId {
        SessionId(rand::random())
    }

    /// Parses the 16-hex-digit form [`fmt::Display`] writes.
    pub fn parse(text: &str) -> Option<SessionId> {
        (text.len() == 16)
            .then(|| u64::from_str_radix(text, 16).ok())
            .flatten()
            .map(SessionId)
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

/// The door a connection came through: the one door type of the gateway,
/// its logs and metrics (the Rust client has its own `signalgate_client::Door`
/// with the same names, so that it does not depend on the gateway).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DoorKind {
    /// The JSON WebSocket at `/ws`.
    Ws,
    /// The gRPC bidirectional stream.
    Grpc,
    /// Socket.IO at `/socket.io/`.
    SocketIo,
}

impl fmt::Display for DoorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DoorKind {
    /// Its label in metrics.
    pub const fn label(self) -> Label {
        Label {
            slot: self as usize,
            text: self.as_str(),
        }
    }

    /// Every door.
    pub const ALL: [DoorKind; 3] = [DoorKind::Ws, DoorKind::Grpc, DoorKind::SocketIo];

    /// `"grpc"`, `"ws"` or `"socketio"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            DoorKind::Grpc => "grpc",
            DoorKind::Ws => "ws",
            DoorKind::SocketIo => "socketio",
        }
    }
}

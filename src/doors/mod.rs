//! The doors: thin adapters between a wire protocol and the core. Each one
//! decodes its frames into [`crate::core::Request`]s, renders
//! [`crate::core::Event`]s back, and maps errors in one place.
//!
//! - [`origin`]: the Origin allowlist and CORS shared by the browser doors.
//! - [`ws`]: the JSON WebSocket at `/ws` (axum).
//! - [`grpc`]: the `signalgate.v1.Signaling/Connect` bidirectional stream (tonic).
//! - [`socketio`]: Socket.IO 2.x/4.x at `/socket.io/` (socketioxide), the seed's wire shapes.
//! - [`polling`]: Socket.IO's HTTP-side bounds: handshake rate, long-polling session caps, POST deadline.

use std::time::Duration;

/// How long every door gives a session it ends to get its last words out
/// (docs/PROTOCOL.md: queued events, the farewell, the close).
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

pub mod grpc;
pub mod origin;
pub mod polling;
pub mod socketio;
pub mod ws;

//! The doors: thin adapters between a wire protocol and the core. Each one
//! decodes its frames into [`crate::core::Request`]s, renders
//! [`crate::core::Event`]s back, and maps errors in one place.
//!
//! - [`json`]: the JSON envelope shared by the WebSocket door (decode/encode).
//! - [`ws`]: the JSON WebSocket at `/ws` (axum).
//! - [`grpc`]: the `signalgate.v1.Signaling/Connect` bidirectional stream (tonic).

pub mod grpc;
pub mod json;
pub mod ws;

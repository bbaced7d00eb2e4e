//! signalgate: a signaling gateway for WebRTC peer-to-peer apps.
//!
//! A browser ("web") and a native app ("app") register under the same uid;
//! the gateway pairs them and relays their signaling. Three doors share one
//! pairing registry: a gRPC bidirectional stream, a JSON WebSocket and
//! Socket.IO.
//!
//! # Layout
//! The layers, from the inside out (each imports only those above it):
//! - [`core`]: protocol-neutral sessions, registry and rules (no wire types);
//!   `sync`: the one lock helper and the bounded outbox queue.
//! - [`protocol`]: wire formats shared by more than one user (the JSON
//!   envelope: JSON doors and cluster); [`proto`]: generated gRPC types and
//!   `google.protobuf.Value` ⇄ JSON.
//! - [`doors`]: thin adapters from each wire protocol to the core.
//! - [`cluster`]: the Redis-backed registry that lets several nodes act as one.
//! - [`auth`]: JWT authentication of connections, and minting for development.
//! - [`hooks`]: signed webhooks of session and pair events (`--webhook-url`).
//! - [`admin`]: the admin API (HTTP JSON and gRPC) and dashboard, behind `--admin-token`.
//! - [`telemetry`]: logs and Prometheus metrics.
//! - [`server`]: the composition root: the configuration (parsed once), the
//!   listener (caps, TLS, the lingering close), each connection under
//!   hyper, the routes of every door on one port, and shutdown.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod auth;
pub mod cluster;
pub mod core;
pub mod doors;
pub mod hooks;
pub mod proto;
pub mod protocol;
pub mod server;
mod sync;
pub mod telemetry;

pub use server::Gateway;
pub use server::config::Config;

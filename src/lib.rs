//! signalgate: a signaling gateway for WebRTC peer-to-peer apps.
//!
//! A browser ("web") and a native app ("app") register under the same uid;
//! the gateway pairs them and relays their signaling. Three doors share one
//! pairing registry: a gRPC bidirectional stream, a JSON WebSocket and
//! Socket.IO.
//!
//! # Layout
//! - [`admin`]: the admin API (HTTP JSON and gRPC) and dashboard, behind `--admin-token`.
//! - [`auth`]: JWT authentication of connections, and minting for development.
//! - [`config`]: flags and environment variables → one plain [`config::Config`].
//! - [`server`]: the composition root: one port, every door, shutdown.
//! - [`listener`]: connection caps and TLS, before HTTP.
//! - [`connection`]: one connection under hyper, closed when it stops making progress.
//! - [`cluster`]: the Redis-backed registry that lets several nodes act as one.
//! - [`core`]: protocol-neutral sessions, registry and rules (no wire types).
//! - [`protocol`]: wire formats shared by more than one user (the JSON envelope: JSON doors and cluster).
//! - [`hooks`]: signed webhooks of session and pair events (`--webhook-url`).
//! - [`doors`]: thin adapters from each wire protocol to the core.
//! - [`proto`]: generated gRPC types and `google.protobuf.Value` ⇄ JSON.
//! - [`net`]: the machine's addresses, for `ipaddr`.
//! - [`telemetry`]: logs and Prometheus metrics.
//! - `sync`: the one lock helper and the bounded outbox queue (core and doors).
//! - [`web`]: the demo page and browser SDK served at `/`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod core;
pub mod doors;
pub mod hooks;
pub mod listener;
pub mod net;
pub mod proto;
pub mod protocol;
pub mod server;
mod sync;
pub mod telemetry;
pub mod web;

pub use config::Config;
pub use server::Gateway;

//! Wire formats shared by more than one user, so that none of them owns
//! another's: the JSON envelope is spoken by the JSON doors (WebSocket,
//! Socket.IO) and carried by the cluster's node frames, which therefore
//! import nothing from a door.
//!
//! - [`envelope`]: `{"event": NAME, "data": ANY, "id": N}` ⇄ core requests
//!   and events.
//! - [`grpc`]: the gRPC door's `ClientEvent` / `ServerEvent` ⇄ core
//!   requests and events.
//! - [`admin`]: the admin API's JSON (HTTP surface and node frames);
//!   [`admin_calls`]: its call outcomes.

pub mod admin;
pub mod admin_calls;
pub mod envelope;
pub mod grpc;

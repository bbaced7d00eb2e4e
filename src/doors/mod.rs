//! The doors: thin adapters between a wire protocol and the core. Each one
//! decodes its frames into [`crate::core::Request`]s, renders
//! [`crate::core::Event`]s back, and maps errors in one place.
//!
//! - [`origin`]: the Origin allowlist and CORS shared by the browser doors.
//! - [`ws`]: the JSON WebSocket at `/ws` (axum).
//! - [`grpc`]: the `signalgate.v1.Signaling/Connect` bidirectional stream (tonic).
//! - [`socketio`]: Socket.IO 2.x/4.x at `/socket.io/` (socketioxide), the seed's wire shapes.
//! - [`polling`]: Socket.IO's HTTP-side bounds: handshake rate, long-polling session caps, POST deadline.
//! - `close`: the one close sequence (end → last words → drain → release)
//!   behind the `Transport` seam each door implements.

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, header};
use tower::ServiceExt;

use crate::auth::{AuthError, AuthPolicy, bearer};
use crate::core::Identity;
use crate::telemetry::metrics;

/// Whether a request is a gRPC call (`content-type: application/grpc...`).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"))
}

/// Mounts a tonic service at `/{package.Service}/{method}` (the signaling
/// door, health, reflection and the admin service alike).
pub(crate) fn grpc_route<S>(router: Router, service: S) -> Router
where
    S: tower::Service<Request<tonic::body::Body>, Error = Infallible>
        + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Response: axum::response::IntoResponse,
    S::Future: Send + 'static,
{
    router.route_service(
        &format!("/{}/{{*method}}", S::NAME),
        service.map_request(|request: Request<Body>| request.map(tonic::body::Body::new)),
    )
}

/// The client's address, which the connection layer puts in every
/// request's extensions (axum's `ConnectInfo`).
pub(crate) fn remote_addr(extensions: &axum::http::Extensions) -> Option<std::net::SocketAddr> {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0)
}

/// Where a connection presented its token, as each door finds it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Presented<'a> {
    /// A value in the door's own place (`?token=`, the Socket.IO handshake's
    /// `auth.token` or `token` query parameter): tried first.
    pub token: Option<&'a str>,
    /// An `Authorization` header (gRPC: metadata) value, `Bearer <token>`.
    pub authorization: Option<&'a str>,
}

/// The one token check of every door: the token presented (its own place
/// first, then `Authorization: Bearer`), checked against `auth`; a refusal
/// is counted (`signalgate_refused_connections_total{reason="unauthenticated"}`).
pub(crate) async fn authenticate(
    auth: &AuthPolicy,
    presented: Presented<'_>,
) -> Result<Option<Identity>, AuthError> {
    let token = presented
        .token
        .or_else(|| presented.authorization.and_then(bearer));
    auth.authenticate(token)
        .await
        .inspect_err(|_| metrics::refused("unauthenticated"))
}

mod close;
pub mod grpc;
pub mod origin;
pub mod polling;
pub mod socketio;
pub mod ws;

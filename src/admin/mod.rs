//! The admin surface: the API the app's backend and operators call (HTTP
//! JSON under `/admin/v1/`, gRPC `signalgate.admin.v1.Admin`) and the
//! dashboard at `/admin/`. It is mounted only with `--admin-token`; every
//! API call carries that token as `Authorization: Bearer TOKEN`, compared
//! in constant time. It shares nothing with the client doors' JWT
//! authentication and no browser origin may call it cross-site.
//!
//! - [`http`]: the JSON endpoints; [`grpc`]: the tonic service;
//! - this module: the token check, the request rules both surfaces share,
//!   and the router.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, StatusCode, header};
use axum::middleware::Next;
use subtle::ConstantTimeEq;

use crate::core::admin::{DEFAULT_PAGE, MAX_PAGE, SessionFilter};
use crate::core::{Hub, JsonPayload, RegistryError, Rejection, Role, Uid};
use crate::protocol::admin::decode_cursor;
use crate::telemetry::metrics;

pub mod dashboard;
pub mod grpc;
pub mod http;

/// The admin token, as configured.
#[derive(Clone)]
pub struct AdminToken(Arc<[u8]>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// The admin token is empty.
#[derive(Debug, thiserror::Error)]
#[error("--admin-token must not be empty")]
pub struct EmptyAdminToken;

impl AdminToken {
    /// The token every admin call must present.
    pub fn new(token: &str) -> Result<AdminToken, EmptyAdminToken> {
        if token.is_empty() {
            return Err(EmptyAdminToken);
        }
        Ok(AdminToken(Arc::from(token.as_bytes())))
    }

    /// Whether `headers` carry `Authorization: Bearer <this token>`.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(crate::auth::bearer)
            .unwrap_or("");
        bool::from(presented.as_bytes().ct_eq(&self.0))
    }
}

/// Whether a request comes from a browser page of another origin: it
/// carries an `Origin` whose host is not the one it was sent to.
fn cross_site(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    !origin_host.eq_ignore_ascii_case(host)
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"))
}

/// The token check in front of every admin call (HTTP and gRPC): a
/// missing or wrong token is 401 (`UNAUTHENTICATED` for gRPC); a
/// cross-site browser request is 403.
async fn require_token(
    axum::extract::State(token): axum::extract::State<AdminToken>,
    request: Request<Body>,
    next: Next,
) -> Response<Body> {
    let headers = request.headers();
    if is_grpc(headers) {
        if !token.admits(headers) {
            metrics::refused("admin_unauthenticated");
            let (parts, ()) = tonic::Status::unauthenticated("missing or wrong admin token")
                .into_http::<()>()
                .into_parts();
            return Response::from_parts(parts, Body::empty());
        }
        return next.run(request).await;
    }
    if cross_site(headers) {
        return http::error(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "the admin API cannot be called from another origin",
        );
    }
    if !token.admits(headers) {
        metrics::refused("admin_unauthenticated");
        let mut response = http::error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "missing or wrong admin token",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"signalgate admin\""),
        );
        return response;
    }
    next.run(request).await
}

/// The admin API and dashboard, behind the token check (the dashboard's
/// page itself needs no token: it asks for one).
pub fn router(hub: Hub, token: AdminToken, max_message_bytes: usize) -> Router {
    let api = http::router(hub.clone(), max_message_bytes);
    let service = grpc::service(hub, max_message_bytes);
    let protected = crate::server::grpc_route(api, service)
        .layer(axum::middleware::from_fn_with_state(token, require_token));
    protected.merge(dashboard::router())
}

/// Why an admin call failed; each surface maps it in one place (HTTP
/// status and code, gRPC status).
pub(crate) enum Failure {
    /// The request was refused (`BAD_REQUEST`, `MESSAGE_TOO_LARGE`).
    Refused(Rejection),
    /// The registry (Redis) could not be asked.
    Registry(RegistryError),
    /// No session holds the (uid, role) pushed to.
    NoSession,
}

impl From<Rejection> for Failure {
    fn from(rejection: Rejection) -> Failure {
        Failure::Refused(rejection)
    }
}

impl From<RegistryError> for Failure {
    fn from(error: RegistryError) -> Failure {
        Failure::Registry(error)
    }
}

/// A uid from the API: non-empty, within the uid rules.
pub(crate) fn parse_uid(text: &str) -> Result<Uid, Rejection> {
    Uid::new(text)
}

/// A role from the API: `web` or `app`.
pub(crate) fn parse_role(text: &str) -> Result<Role, Rejection> {
    text.parse()
        .map_err(|_| Rejection::bad_request("role must be \"web\" or \"app\""))
}

/// A listing's filter from the API's `uid_prefix`, `limit` and `cursor`.
pub(crate) fn session_filter(
    uid_prefix: String,
    limit: Option<usize>,
    cursor: Option<&str>,
) -> Result<SessionFilter, Rejection> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(Rejection::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let after = match cursor.filter(|cursor| !cursor.is_empty()) {
        Some(cursor) => Some(decode_cursor(cursor)?),
        None => None,
    };
    Ok(SessionFilter {
        uid_prefix,
        exact: false,
        after,
        limit,
    })
}

/// Checks a pushed payload against the message size limit.
pub(crate) fn push_payload(data: JsonPayload, max_bytes: usize) -> Result<JsonPayload, Rejection> {
    if data.len() > max_bytes {
        return Err(Rejection::new(
            crate::core::ErrorCode::MessageTooLarge,
            format!("data exceeds the message size limit ({max_bytes} bytes)"),
        ));
    }
    Ok(data)
}

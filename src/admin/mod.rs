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
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, StatusCode, header};
use axum::middleware::Next;
use subtle::ConstantTimeEq;

use crate::core::admin::{DEFAULT_PAGE, MAX_PAGE, SessionFilter};
use crate::core::{ErrorCode, Hub, JsonPayload, RegistryError, Rejection, Role, Uid};
use crate::protocol::admin::decode_cursor;
use crate::telemetry::metrics;

pub mod dashboard;
mod failures;
pub mod grpc;
pub mod http;

use failures::FailedAttempts;

/// The admin token, as configured.
#[derive(Clone)]
pub struct AdminToken(Arc<[u8]>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// The shortest admin token accepted, in bytes: a short one is guessed.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 16;

/// The admin token is too short to be a secret.
#[derive(Debug, thiserror::Error)]
#[error(
    "--admin-token must be at least {MIN_ADMIN_TOKEN_BYTES} bytes (e.g. `openssl rand -hex 32`)"
)]
pub struct ShortAdminToken;

impl AdminToken {
    /// The token every admin call must present (at least
    /// [`MIN_ADMIN_TOKEN_BYTES`] long).
    pub fn new(token: &str) -> Result<AdminToken, ShortAdminToken> {
        if token.len() < MIN_ADMIN_TOKEN_BYTES {
            return Err(ShortAdminToken);
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

/// What stands in front of every admin call: the token and the count of
/// failed attempts per client address.
#[derive(Clone)]
struct Gate {
    token: AdminToken,
    failures: Arc<FailedAttempts>,
}

/// A refusal, answered on the caller's surface: a gRPC status for a gRPC
/// caller, else an HTTP status with `{"code", "message"}`.
fn refuse(grpc: bool, status: StatusCode, code: &str, message: &str) -> Response<Body> {
    if grpc {
        let status = match status {
            StatusCode::FORBIDDEN => tonic::Status::permission_denied(message),
            StatusCode::TOO_MANY_REQUESTS => tonic::Status::resource_exhausted(message),
            _ => tonic::Status::unauthenticated(message),
        };
        let (parts, ()) = status.into_http::<()>().into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    let mut response = http::error(status, code, message);
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"signalgate admin\""),
        );
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

/// The check in front of every admin call (HTTP and gRPC alike): a
/// cross-site browser request is 403 (`PERMISSION_DENIED`); a client
/// address with too many failed attempts is 429 (`RESOURCE_EXHAUSTED`)
/// before its token is looked at; a missing or wrong token is 401
/// (`UNAUTHENTICATED`) and counts as a failed attempt.
async fn require_token(
    axum::extract::State(gate): axum::extract::State<Gate>,
    request: Request<Body>,
    next: Next,
) -> Response<Body> {
    let headers = request.headers();
    let grpc = crate::doors::is_grpc(headers);
    if cross_site(headers) {
        metrics::refused("admin_cross_site");
        return refuse(
            grpc,
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "the admin API cannot be called from another origin",
        );
    }
    let client = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    let now = std::time::Instant::now();
    if client.is_some_and(|ip| gate.failures.throttled(ip, now)) {
        metrics::refused("admin_throttled");
        return refuse(
            grpc,
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "too many failed admin authentications from this address; wait a second",
        );
    }
    if !gate.token.admits(headers) {
        metrics::refused("admin_unauthenticated");
        if let Some(ip) = client {
            gate.failures.failed(ip, now);
        }
        return refuse(
            grpc,
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "missing or wrong admin token",
        );
    }
    next.run(request).await
}

/// The admin API and dashboard, behind the token check (the dashboard's
/// page itself needs no token: it asks for one).
pub fn router(hub: Hub, token: AdminToken, max_message_bytes: usize) -> Router {
    let api = http::router(hub.clone(), max_message_bytes);
    let service = grpc::service(hub, max_message_bytes);
    let gate = Gate {
        token,
        failures: Arc::new(FailedAttempts::default()),
    };
    let protected = crate::doors::grpc_route(api, service)
        .layer(axum::middleware::from_fn_with_state(gate, require_token));
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

/// Whether a refusal's code means the request was too large (413 /
/// `RESOURCE_EXHAUSTED`) rather than malformed (400 / `INVALID_ARGUMENT`):
/// the one place both surfaces read it. Every code is listed, so a new one
/// does not compile until it is placed.
pub(crate) const fn refused_as_too_large(code: ErrorCode) -> bool {
    match code {
        ErrorCode::MessageTooLarge => true,
        ErrorCode::BadRequest
        | ErrorCode::NotRegistered
        | ErrorCode::AlreadyRegistered
        | ErrorCode::NoPeer
        | ErrorCode::Unauthenticated
        | ErrorCode::Forbidden
        | ErrorCode::RegisterTimeout
        | ErrorCode::WrongRole
        | ErrorCode::Replaced
        | ErrorCode::SlowConsumer
        | ErrorCode::ResumeFailed
        | ErrorCode::RateLimited
        | ErrorCode::ShuttingDown
        | ErrorCode::Internal
        | ErrorCode::Unavailable
        | ErrorCode::Kicked
        | ErrorCode::Draining => false,
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

/// Longest kick reason accepted, in bytes: it travels to the client in
/// its `error` (and to every node), so it stays well inside every door's
/// frame and header limits.
pub const MAX_KICK_REASON_BYTES: usize = 512;

/// A kick's reason from the API: the default when absent or empty,
/// `BAD_REQUEST` above [`MAX_KICK_REASON_BYTES`].
pub(crate) fn kick_reason(reason: Option<&str>) -> Result<Arc<str>, Rejection> {
    match reason.filter(|reason| !reason.is_empty()) {
        None => Ok(Arc::from("closed by an operator")),
        Some(reason) if reason.len() > MAX_KICK_REASON_BYTES => Err(Rejection::bad_request(
            format!("reason must be at most {MAX_KICK_REASON_BYTES} bytes"),
        )),
        Some(reason) => Ok(Arc::from(reason)),
    }
}

/// The window of the calls summary when none is asked for.
pub(crate) const DEFAULT_CALLS_WINDOW: Duration = Duration::from_secs(3600);
/// The longest window of the calls summary.
pub(crate) const MAX_CALLS_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The calls summary's window from the API (`1h`, `15m`; default one
/// hour): from one second to a day.
pub(crate) fn calls_window(text: Option<&str>) -> Result<Duration, Rejection> {
    let Some(text) = text.filter(|text| !text.is_empty()) else {
        return Ok(DEFAULT_CALLS_WINDOW);
    };
    humantime::parse_duration(text)
        .ok()
        .filter(|window| (Duration::from_secs(1)..=MAX_CALLS_WINDOW).contains(window))
        .ok_or_else(|| {
            Rejection::bad_request("window must be a duration from 1s to 24h, such as 1h or 15m")
        })
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
            ErrorCode::MessageTooLarge,
            format!("data exceeds the message size limit ({max_bytes} bytes)"),
        ));
    }
    Ok(data)
}

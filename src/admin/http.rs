//! The admin API as HTTP JSON (docs/OPERATIONS.md, *Admin API*): presence,
//! sessions, kick, push, stats and calls under `/admin/v1/`.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{Response, StatusCode, header};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::Failure;
use crate::core::admin::PushOutcome;
use crate::core::{ErrorCode, Hub, JsonPayload, Rejection};
use crate::protocol::admin::{
    KickRequest, PresenceJson, PushRequest, SessionJson, SessionsPageJson, StatsJson, encode_cursor,
};
use crate::protocol::admin_calls::CallsJson;

#[derive(Clone)]
struct Api {
    hub: Hub,
    max_message_bytes: usize,
}

/// The JSON endpoints (the token check is the caller's layer).
pub(super) fn router(hub: Hub, max_message_bytes: usize) -> Router {
    Router::new()
        .route("/admin/v1/presence/{uid}", get(presence))
        .route("/admin/v1/sessions", get(sessions))
        .route("/admin/v1/kick", post(kick))
        .route("/admin/v1/push", post(push))
        .route("/admin/v1/stats", get(stats))
        .route("/admin/v1/calls", get(calls))
        .route("/admin/v1/drain", post(drain))
        .with_state(Api {
            hub,
            max_message_bytes,
        })
}

/// A JSON response.
fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned());
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// An error answer: `{"code", "message"}`.
pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({"code": code, "message": message}),
    )
}

/// The one mapping of failures to HTTP answers.
fn answer(result: Result<Response<Body>, Failure>) -> Response<Body> {
    match result {
        Ok(response) => response,
        Err(Failure::Refused(rejection)) => {
            let status = if super::refused_as_too_large(rejection.code) {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            error(status, rejection.code.as_str(), &rejection.message)
        }
        Err(Failure::Registry(registry)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable.as_str(),
            &registry.to_string(),
        ),
        Err(Failure::NoSession) => error(
            StatusCode::NOT_FOUND,
            "NO_SESSION",
            "no session holds that uid and role",
        ),
    }
}

/// A JSON body, or a `BAD_REQUEST` saying why not.
fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, Rejection> {
    serde_json::from_slice(bytes)
        .map_err(|error| Rejection::bad_request(format!("invalid request body: {error}")))
}

async fn presence(State(api): State<Api>, Path(uid): Path<String>) -> Response<Body> {
    answer(
        async {
            let uid = super::parse_uid(&uid)?;
            let presence = api.hub.presence(uid).await?;
            Ok(json(StatusCode::OK, &PresenceJson::from(&presence)))
        }
        .await,
    )
}

/// The query of `GET /admin/v1/sessions`.
#[derive(Debug, Deserialize)]
struct SessionsQuery {
    #[serde(default)]
    uid_prefix: String,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn sessions(
    State(api): State<Api>,
    query: Result<Query<SessionsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response<Body> {
    answer(
        async {
            let Query(query) =
                query.map_err(|rejection| Rejection::bad_request(rejection.body_text()))?;
            let filter =
                super::session_filter(query.uid_prefix, query.limit, query.cursor.as_deref())?;
            let page = api.hub.list_sessions(filter).await?;
            Ok(json(
                StatusCode::OK,
                &SessionsPageJson {
                    sessions: page.sessions.iter().map(SessionJson::from).collect(),
                    next_cursor: page.next_cursor.as_ref().map(encode_cursor),
                },
            ))
        }
        .await,
    )
}

async fn kick(State(api): State<Api>, bytes: Bytes) -> Response<Body> {
    answer(
        async {
            let request: KickRequest = body(&bytes)?;
            let uid = super::parse_uid(&request.uid)?;
            let role = request.role.as_deref().map(super::parse_role).transpose()?;
            let reason = super::kick_reason(request.reason.as_deref())?;
            let kicked = api.hub.kick(uid, role, reason).await?;
            Ok(json(StatusCode::OK, &serde_json::json!({"kicked": kicked})))
        }
        .await,
    )
}

async fn push(State(api): State<Api>, bytes: Bytes) -> Response<Body> {
    answer(
        async {
            let request: PushRequest = body(&bytes)?;
            let uid = super::parse_uid(&request.uid)?;
            let role = super::parse_role(&request.role)?;
            let data =
                super::push_payload(JsonPayload::from_raw(&request.data)?, api.max_message_bytes)?;
            match api.hub.push(uid, role, data).await? {
                PushOutcome::Delivered => Ok(json(
                    StatusCode::OK,
                    &serde_json::json!({"delivered": true}),
                )),
                PushOutcome::Held => Ok(json(
                    StatusCode::OK,
                    &serde_json::json!({"delivered": false, "held": true}),
                )),
                PushOutcome::NoSession => Err(Failure::NoSession),
            }
        }
        .await,
    )
}

/// `POST /admin/v1/drain`: the node drains and exits, as on SIGTERM
/// (docs/CLUSTER.md, "Rolling restarts").
async fn drain(State(api): State<Api>) -> Response<Body> {
    let hand_over = api.hub.can_drain();
    api.hub.request_stop();
    json(
        StatusCode::ACCEPTED,
        &serde_json::json!({"draining": true, "hand_over": hand_over}),
    )
}

async fn stats(State(api): State<Api>) -> Response<Body> {
    answer(
        async {
            let stats = api.hub.stats().await?;
            Ok(json(StatusCode::OK, &StatsJson::from(&stats)))
        }
        .await,
    )
}

/// The query of `GET /admin/v1/calls`.
#[derive(Debug, Deserialize)]
struct CallsQuery {
    window: Option<String>,
}

async fn calls(
    State(api): State<Api>,
    query: Result<Query<CallsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response<Body> {
    answer(
        async {
            let Query(query) =
                query.map_err(|rejection| Rejection::bad_request(rejection.body_text()))?;
            let window = super::calls_window(query.window.as_deref())?;
            let (summary, silent) = api.hub.calls(window).await?;
            Ok(json(
                StatusCode::OK,
                &CallsJson::new(&summary, window, &silent),
            ))
        }
        .await,
    )
}

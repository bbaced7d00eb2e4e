//! The routers: every door, `/healthz`, `/readyz`, `/metrics`, the demo
//! page, and the admin surface (on the same router, or on its own for
//! `--admin-listen`).

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, Response, StatusCode, header};
use axum::routing::get;
use tracing::info;

use crate::admin::AdminToken;
use crate::auth::AuthPolicy;
use crate::core::{Hub, RateLimit};
use crate::doors::grpc::{self, GrpcConfig, GrpcDoor};
use crate::doors::grpc_route;
use crate::doors::origin::{self, OriginPolicy};
use crate::doors::polling::PollingLimits;
use crate::doors::socketio::{self, SocketIoConfig};
use crate::doors::ws::{self, WsConfig};
use crate::proto::{FILE_DESCRIPTOR_SET, server::signaling_server::SignalingServer};
use crate::server::config::Config;
use crate::telemetry;

/// Margin over Engine.IO's own lifetime of a silent polling session before
/// it stops counting against the polling caps.
const POLLING_SLACK: Duration = Duration::from_secs(5);

/// The router of `--listen`, and the admin's own when `--admin-listen`
/// gives it an address.
pub(super) fn build_router(
    hub: &Hub,
    config: &Config,
    auth: &AuthPolicy,
) -> anyhow::Result<(Router, Option<Router>)> {
    let grpc_door = grpc::router(
        hub.clone(),
        &GrpcConfig {
            max_message_bytes: config.max_message_bytes,
        },
        auth.clone(),
    );
    let (health_reporter, health) = tonic_health::server::health_reporter();
    // Nothing else changes the status: the service is serving while the process runs.
    tokio::spawn(async move {
        health_reporter
            .set_serving::<SignalingServer<GrpcDoor>>()
            .await;
    });
    // Reflection lists the admin service only when it is on.
    let descriptors = || {
        let builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        if config.admin_token.is_some() && config.admin_listen.is_none() {
            builder.register_encoded_file_descriptor_set(crate::proto::admin::FILE_DESCRIPTOR_SET)
        } else {
            builder
        }
    };
    let reflection_v1 = descriptors().build_v1()?;
    let reflection_v1alpha = descriptors().build_v1alpha()?;

    let ws_door = ws::router(
        hub.clone(),
        WsConfig {
            max_message_bytes: config.max_message_bytes,
            read_buffer_bytes: config.ws_read_buffer_bytes,
            write_buffer_bytes: config.ws_write_buffer_bytes,
            ping_interval: config.ping_interval,
            ping_timeout: config.ping_timeout,
        },
        auth.clone(),
    );
    let origins = OriginPolicy::new(&config.allowed_origins);
    if origins.allows_all() {
        info!("browser doors accept every Origin (set --allowed-origin to restrict them)");
    } else {
        info!(origins = ?config.allowed_origins, "browser doors accept only the allowed origins");
    }
    let socketio = socketio::router(
        hub.clone(),
        &SocketIoConfig {
            max_message_bytes: config.max_message_bytes,
            ping_interval: config.ping_interval,
            ping_timeout: config.ping_timeout,
            // socketioxide's own buffer sits ahead of the socket, bounded in
            // packets only. It must hold the answers to a burst of requests:
            // an acknowledgement callback cannot wait for room (a failed
            // send consumes it), so it is as large as the outbox in events
            // (docs/SECURITY.md).
            max_buffered_packets: config.outbox_capacity,
            read_buffer_bytes: config.ws_read_buffer_bytes,
            polling: PollingLimits {
                max_sessions: config.max_connections,
                max_sessions_per_ip: config.max_connections_per_ip,
                handshake_rate: RateLimit {
                    per_second: config.socketio_handshake_rate,
                    burst: config.socketio_handshake_rate * 2.0,
                },
                // socketioxide has closed a session silent this long.
                session_lifetime: config.ping_interval + config.ping_timeout + POLLING_SLACK,
                body_timeout: config.header_read_timeout,
            },
        },
        auth.clone(),
    )
    .layer(origins.cors_layer());
    let browser_doors = ws_door
        .merge(socketio)
        .layer(axum::middleware::from_fn_with_state(
            origins,
            origin::enforce,
        ));
    let operations = Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Operations {
            hub: hub.clone(),
            auth: auth.clone(),
        });
    let mut router = Router::new()
        .merge(browser_doors)
        .merge(operations)
        .merge(crate::server::web::router())
        .route("/healthz", get(healthz));
    let mut admin = None;
    if let Some(token) = &config.admin_token {
        let token = AdminToken::new(token)?;
        info!("admin API on: /admin/v1/, signalgate.admin.v1.Admin and the dashboard at /admin/");
        let surface = crate::admin::router(hub.clone(), token, config.max_message_bytes);
        match config.admin_listen {
            Some(_) => admin = Some(surface.fallback(not_found)),
            None => router = router.merge(surface),
        }
    }
    let router = router.merge(grpc_door);
    let router = grpc_route(router, health);
    let router = grpc_route(router, reflection_v1);
    let router = grpc_route(router, reflection_v1alpha);
    Ok((router.fallback(not_found), admin))
}

/// `GET /healthz`: the process is up.
async fn healthz() -> &'static str {
    "ok\n"
}

/// What `/readyz` and `/metrics` read.
#[derive(Clone)]
struct Operations {
    hub: Hub,
    auth: AuthPolicy,
}

/// `GET /readyz`: 200 while the gateway accepts sessions, 503 once it is
/// shutting down (a load balancer stops sending new clients), while its
/// registry is unavailable, or before its JWKS was first fetched.
async fn readyz(State(operations): State<Operations>) -> (StatusCode, &'static str) {
    let hub = &operations.hub;
    if hub.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else if hub.is_draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: sessions move to other nodes\n",
        )
    } else if !hub.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "registry unavailable\n")
    } else if !operations.auth.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "JWKS not fetched yet\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(Operations { hub, .. }): State<Operations>) -> Response<Body> {
    let census = hub.census();
    let mut response = Response::new(Body::from(telemetry::metrics::render(
        telemetry::metrics::Gauges {
            open_sessions: census.open_sessions,
            away_sessions: census.away_sessions,
            pairs: census.registry.pairs,
            registry_available: hub.registry_available(),
        },
    )));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Unknown paths: a gRPC `UNIMPLEMENTED` for gRPC callers, 404 for the rest.
async fn not_found(request: Request<Body>) -> Response<Body> {
    if crate::doors::is_grpc(request.headers()) {
        let (parts, ()) = tonic::Status::unimplemented("no such service or method")
            .into_http::<()>()
            .into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    let mut response = Response::new(Body::from("not found\n"));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

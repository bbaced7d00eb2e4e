//! The composition root: builds the hub over a registry, mounts every door
//! on one router, serves it on one listener (HTTP/1.1 and cleartext HTTP/2
//! side by side) and owns shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::core::{Census, Hub, HubConfig, InMemoryRegistry, Registry, ResumeLimits};
use crate::doors::grpc::GrpcDoor;
use crate::doors::origin::{self, OriginPolicy};
use crate::doors::socketio::{self, SocketIoConfig};
use crate::doors::ws::{self, WsConfig, WsDoor};
use crate::net::address_source;
use crate::proto::{FILE_DESCRIPTOR_SET, v1::signaling_server::SignalingServer};

/// HTTP/2 keepalive ping interval (detects dead gRPC peers).
const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// How long an HTTP/2 keepalive ping may stay unanswered.
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Concurrent HTTP/2 streams per connection.
const HTTP2_MAX_CONCURRENT_STREAMS: u32 = 128;
/// How long a client may take to send its HTTP/1 request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Engine.IO ping interval (Socket.IO door).
const SOCKETIO_PING_INTERVAL: Duration = Duration::from_secs(25);
/// Engine.IO ping timeout (Socket.IO door).
const SOCKETIO_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// A configured gateway, ready to serve.
pub struct Gateway {
    hub: Hub,
    router: Router,
    config: Config,
}

impl Gateway {
    /// A gateway with the embedded in-memory registry.
    pub fn new(config: Config) -> anyhow::Result<Gateway> {
        Gateway::with_registry(config, Arc::new(InMemoryRegistry::new()))
    }

    /// A gateway over the given registry.
    pub fn with_registry(config: Config, registry: Arc<dyn Registry>) -> anyhow::Result<Gateway> {
        let hub = Hub::new(
            registry,
            HubConfig {
                outbox_capacity: config.outbox_capacity,
                addresses: address_source(&config.advertise_ip),
                resume: ResumeLimits {
                    window: config.resume_window,
                    max_events: config.resume_buffer_events,
                    max_bytes: config.resume_buffer_bytes,
                },
            },
        );
        let router = build_router(&hub, &config)?;
        Ok(Gateway {
            hub,
            router,
            config,
        })
    }

    /// The hub, for inspecting what the gateway holds.
    pub fn hub(&self) -> Hub {
        self.hub.clone()
    }

    /// Serves until `shutdown` resolves, then closes every session
    /// (`SHUTTING_DOWN`) and waits up to the grace period for them to end.
    pub async fn serve<F>(self, listener: TcpListener, shutdown: F) -> io::Result<()>
    where
        F: Future<Output = ()> + Send,
    {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(HTTP2_KEEPALIVE_INTERVAL)
            .keep_alive_timeout(HTTP2_KEEPALIVE_TIMEOUT)
            .max_concurrent_streams(HTTP2_MAX_CONCURRENT_STREAMS);
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        info!(address = %listener.local_addr()?, "signalgate listening (gRPC, /ws, /socket.io/, /healthz)");
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            warn!(%error, "accept failed");
                            tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                            continue;
                        }
                    };
                    if let Err(error) = stream.set_nodelay(true) {
                        debug!(%error, "cannot set TCP_NODELAY");
                    }
                    let service = TowerToHyperService::new(self.router.clone());
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            debug!(%peer, %error, "connection ended with an error");
                        }
                    });
                }
            }
        }
        drop(listener);
        info!("shutting down: closing every session");
        self.hub.shutdown();
        let grace = self.config.shutdown_grace;
        let drained = tokio::time::timeout(grace, async {
            graceful.shutdown().await;
            wait_for_sessions(&self.hub).await;
        })
        .await;
        match drained {
            Ok(()) => info!("every session closed"),
            Err(_) => warn!(
                open_sessions = self.hub.census().open_sessions,
                "grace period over; exiting with sessions still open"
            ),
        }
        Ok(())
    }
}

/// Polls until no session is open (upgraded WebSockets are not tracked by
/// hyper's graceful shutdown, so the hub's count is the source of truth).
async fn wait_for_sessions(hub: &Hub) {
    while hub.census().open_sessions > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn build_router(hub: &Hub, config: &Config) -> anyhow::Result<Router> {
    let signaling = SignalingServer::new(GrpcDoor::new(hub.clone()))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes.saturating_mul(4));
    let (health_reporter, health) = tonic_health::server::health_reporter();
    // Nothing else changes the status: the service is serving while the process runs.
    tokio::spawn(async move {
        health_reporter
            .set_serving::<SignalingServer<GrpcDoor>>()
            .await;
    });
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let ws_door = WsDoor::new(
        hub.clone(),
        WsConfig {
            max_message_bytes: config.max_message_bytes,
            read_buffer_bytes: config.ws_read_buffer_bytes,
            write_buffer_bytes: config.ws_write_buffer_bytes,
        },
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
            ping_interval: SOCKETIO_PING_INTERVAL,
            ping_timeout: SOCKETIO_PING_TIMEOUT,
            max_buffered_packets: config.outbox_capacity,
        },
    )
    .layer(origins.cors_layer());
    let browser_doors = Router::new()
        .route("/ws", get(ws::upgrade))
        .with_state(ws_door)
        .merge(socketio)
        .layer(axum::middleware::from_fn_with_state(
            origins,
            origin::enforce,
        ));
    let router = Router::new()
        .merge(browser_doors)
        .route("/healthz", get(healthz));
    let router = grpc_route(router, signaling);
    let router = grpc_route(router, health);
    let router = grpc_route(router, reflection_v1);
    let router = grpc_route(router, reflection_v1alpha);
    Ok(router.fallback(not_found))
}

/// Mounts a tonic service at `/{package.Service}/{method}`.
fn grpc_route<S>(router: Router, service: S) -> Router
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

/// `GET /healthz`: the process is up.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Unknown paths: a gRPC `UNIMPLEMENTED` for gRPC callers, 404 for the rest.
async fn not_found(request: Request<Body>) -> Response<Body> {
    let is_grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    if is_grpc {
        let (parts, ()) = tonic::Status::unimplemented("no such service or method")
            .into_http::<()>()
            .into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    let mut response = Response::new(Body::from("not found\n"));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

/// The current census of a gateway's hub (for tests and tools).
pub fn census(hub: &Hub) -> Census {
    hub.census()
}

//! The composition root: builds the hub over a registry, mounts every door
//! on one router, serves it on one listener (HTTP/1.1 and cleartext HTTP/2
//! side by side) and owns shutdown.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, Response, StatusCode, header};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::admin::AdminToken;
use crate::auth::{AuthPolicy, AuthSettings, ClaimRules};
use crate::cluster::{ClusterConfig, RedisRegistry, RedisTarget};
use crate::config::Config;
use crate::connection::{self, ConnectionBounds, Finish};
use crate::core::{Hub, HubConfig, IcePolicy, InMemoryRegistry, RateLimit, Registry, ResumeLimits};
use crate::doors::grpc::GrpcDoor;
use crate::doors::grpc_route;
use crate::doors::origin::{self, OriginPolicy};
use crate::doors::polling::PollingLimits;
use crate::doors::socketio::{self, SocketIoConfig};
use crate::doors::ws::{self, WsConfig, WsDoor};
use crate::hooks::{WebhookConfig, Webhooks};
use crate::listener::{Conn, ConnectionLimits, tls_acceptor};
use crate::net::address_source;
use crate::proto::{FILE_DESCRIPTOR_SET, server::signaling_server::SignalingServer};
use crate::telemetry;

/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Margin over Engine.IO's own lifetime of a silent polling session before
/// it stops counting against the polling caps.
const POLLING_SLACK: Duration = Duration::from_secs(5);
/// How long shutdown waits for queued webhooks to go out.
const WEBHOOK_FLUSH: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// A configured gateway, ready to serve.
pub struct Gateway {
    hub: Hub,
    auth: AuthPolicy,
    webhooks: Option<Arc<Webhooks>>,
    router: Router,
    /// The admin API and dashboard when they have an address of their own
    /// (`--admin-listen`).
    admin: Option<Router>,
    config: Config,
    tls: Option<TlsAcceptor>,
}

impl Gateway {
    /// A gateway with the embedded in-memory registry.
    pub fn new(config: Config) -> anyhow::Result<Gateway> {
        Gateway::with_registry(config, Arc::new(InMemoryRegistry::new()))
    }

    /// A gateway over the registry the configuration asks for: Redis with
    /// `--redis-url`, a Redis Cluster with `--redis-cluster-node`, else the
    /// embedded in-memory one.
    pub async fn from_config(config: Config) -> anyhow::Result<Gateway> {
        let redis = match (&config.redis_url, config.redis_cluster_nodes.as_slice()) {
            (Some(url), _) => Some(RedisTarget::Single(url.clone())),
            (None, []) => None,
            (None, nodes) => Some(RedisTarget::Cluster(nodes.to_vec())),
        };
        match redis {
            Some(redis) => {
                let registry = RedisRegistry::connect(ClusterConfig {
                    redis,
                    prefix: config.redis_prefix.clone(),
                    node_ttl: config.node_ttl,
                })
                .await?;
                Gateway::with_registry(config, Arc::new(registry))
            }
            None => Gateway::new(config),
        }
    }

    /// A gateway over the given registry.
    pub fn with_registry(config: Config, registry: Arc<dyn Registry>) -> anyhow::Result<Gateway> {
        // Install the metrics recorder before anything records.
        if telemetry::metrics::handle().is_none() {
            warn!("another metrics recorder is installed; /metrics will be empty");
        }
        let auth = AuthPolicy::new(&AuthSettings {
            secret: config.jwt_secret.as_deref(),
            public_key_path: config.jwt_public_key.as_deref(),
            jwks_url: config.jwt_jwks_url.as_deref(),
            jwks_refresh: config.jwt_jwks_refresh,
            claims: ClaimRules {
                issuer: config.jwt_issuer.clone(),
                audience: config.jwt_audience.clone(),
            },
        })?;
        if auth.enabled() {
            info!(
                ?auth,
                "authentication required: connections must present a JWT"
            );
        } else {
            warn!(
                "AUTHENTICATION IS OFF: anyone may connect and register as any uid. \
                 Set --jwt-secret or --jwt-public-key in production (docs/SECURITY.md)."
            );
        }
        let ice = IcePolicy::new(
            &config.ice_servers,
            config.turn_secret.as_deref(),
            config.turn_ttl,
        )?
        .map(Arc::new);
        if let Some(ice) = &ice {
            info!(?ice, "handing ICE servers to sessions");
            if ice.hands_out_bare_turn() {
                warn!(
                    "TURN URLs are handed out WITHOUT credentials: a TURN server in \
                     secret mode (coturn use-auth-secret) will refuse them. Set --turn-secret \
                     (docs/OPERATIONS.md#turn-coturn)."
                );
            }
        }
        let webhooks = WebhookConfig::from_flags(
            config.webhook_url.as_deref(),
            config.webhook_secret.as_deref(),
            (
                config.webhook_timeout,
                config.webhook_max_attempts,
                config.webhook_queue,
            ),
            registry.node_name().unwrap_or("local"),
        )?
        .map(|webhooks| {
            info!(
                ?webhooks,
                "sending session and pair events as signed webhooks"
            );
            Webhooks::start(webhooks)
        })
        .transpose()?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            _ => None,
        };
        let hub = Hub::new(
            registry,
            HubConfig {
                outbox_capacity: config.outbox_capacity,
                outbox_max_bytes: config.outbox_max_bytes,
                addresses: address_source(&config.advertise_ip),
                resume: ResumeLimits {
                    window: config.resume_window,
                    max_events: config.resume_buffer_events,
                    max_bytes: config.resume_buffer_bytes,
                },
                rate_limit: RateLimit {
                    per_second: config.rate_limit,
                    burst: config.rate_burst,
                },
                register_timeout: config.register_timeout,
                max_uid_bytes: config.max_uid_bytes,
                ice,
                hooks: webhooks
                    .clone()
                    .map(|webhooks| webhooks as Arc<dyn crate::core::hooks::HookSink>),
            },
        );
        let (router, admin) = build_router(&hub, &config, &auth)?;
        Ok(Gateway {
            hub,
            auth,
            webhooks,
            router,
            admin,
            config,
            tls,
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
        let config = &self.config;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(config.ping_interval)
            .keep_alive_timeout(config.ping_timeout)
            .max_concurrent_streams(config.http2_max_streams);
        let limits = ConnectionLimits::new(config.max_connections, config.max_connections_per_ip);
        let bounds = ConnectionBounds {
            first_request: config.header_read_timeout,
            idle: config.idle_timeout,
        };
        // Every connection's task, and the signal that tells them to finish.
        let connections = tokio_util::task::TaskTracker::new();
        let finish_connections = tokio_util::sync::CancellationToken::new();
        let upkeep = tokio_util::sync::CancellationToken::new();
        tokio::spawn(telemetry::metrics::run_upkeep(upkeep.clone()));
        tokio::spawn(self.hub.clone().sample_activity(upkeep.clone()));
        if let Some(keys) = self.auth.jwks() {
            tokio::spawn(std::sync::Arc::clone(keys).run(upkeep.clone()));
        }
        if let (Some(admin), Some(address)) = (&self.admin, config.admin_listen) {
            let admin_listener = TcpListener::bind(address).await?;
            info!(address = %admin_listener.local_addr()?, "admin API and dashboard listening on their own address");
            let admin = admin
                .clone()
                .into_make_service_with_connect_info::<std::net::SocketAddr>();
            let stop = upkeep.clone();
            tokio::spawn(async move {
                let served = axum::serve(admin_listener, admin)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
                if let Err(error) = served {
                    warn!(%error, "the admin listener failed");
                }
            });
        }
        let _stop_upkeep = upkeep.drop_guard();
        tokio::pin!(shutdown);
        let scheme = if self.tls.is_some() {
            "TLS"
        } else {
            "cleartext"
        };
        info!(address = %listener.local_addr()?, scheme, "signalgate listening (gRPC, /ws, /socket.io/, /healthz, /readyz, /metrics)");
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = self.hub.stop_requested() => break,
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            warn!(%error, "accept failed");
                            tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                            continue;
                        }
                    };
                    let permit = match limits.admit(peer) {
                        Ok(permit) => permit,
                        Err(refusal) => {
                            telemetry::metrics::refused(refusal.label());
                            debug!(%peer, reason = refusal.label(), "connection refused");
                            continue;
                        }
                    };
                    if let Err(error) = stream.set_nodelay(true) {
                        debug!(%error, "cannot set TCP_NODELAY");
                    }
                    let tls = self.tls.clone();
                    let builder = builder.clone();
                    let router = self.router.clone();
                    let finish = finish_connections.clone();
                    connections.spawn(async move {
                        let (finished, error) = match tls {
                            None => connection::serve(Conn::plain(stream, permit), peer, builder, router, bounds, finish).await,
                            Some(acceptor) => {
                                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                    Ok(Ok(stream)) => connection::serve(Conn::tls(stream, permit), peer, builder, router, bounds, finish).await,
                                    Ok(Err(error)) => {
                                        debug!(%peer, %error, "TLS handshake failed");
                                        return;
                                    }
                                    Err(_) => {
                                        debug!(%peer, "TLS handshake timed out");
                                        return;
                                    }
                                }
                            }
                        };
                        if finished == Finish::Idle {
                            telemetry::metrics::stalled("silent");
                            debug!(%peer, "connection closed: silent past its bound");
                        }
                        if let Some(error) = error {
                            debug!(%peer, %error, "connection ended with an error");
                        }
                    });
                }
            }
        }
        drop(listener);
        let grace = self.config.shutdown_grace;
        let started = tokio::time::Instant::now();
        if self.hub.can_drain() && self.hub.another_node_answers().await {
            // A rolling restart: hand the sessions to the other nodes
            // (docs/CLUSTER.md, "Rolling restarts"), then close what is left.
            // The last node standing has nobody to hand them to.
            self.hub.drain(drain_spread(grace));
            let handed_over =
                tokio::time::timeout(grace.mul_f64(0.8), wait_for_hand_over(&self.hub)).await;
            match handed_over {
                Ok(()) => info!(
                    took_ms = started.elapsed().as_millis() as u64,
                    "drained: every session was resumed on another node"
                ),
                Err(_) => warn!(
                    left = self.hub.census().open_sessions,
                    "drain: sessions not resumed elsewhere in time are closed"
                ),
            }
        }
        info!("shutting down: closing every session");
        self.hub.shutdown();
        let grace = grace.saturating_sub(started.elapsed());
        finish_connections.cancel();
        connections.close();
        let drained = tokio::time::timeout(grace, async {
            connections.wait().await;
            wait_for_sessions(&self.hub).await;
        })
        .await;
        match drained {
            Ok(()) => info!("every session and connection closed"),
            Err(_) => warn!(
                open_sessions = self.hub.census().open_sessions,
                open_connections = connections.len(),
                "grace period over; exiting with sessions or connections still open"
            ),
        }
        if let Some(webhooks) = &self.webhooks {
            // The sessions' last events (`session.ended` with `shutdown`).
            webhooks.flush(WEBHOOK_FLUSH).await;
        }
        self.hub.leave().await;
        Ok(())
    }
}

/// The spread of a drain's `reconnect` waits: a quarter of the grace
/// period, at most 5 s (clients must resume well within the grace).
fn drain_spread(grace: Duration) -> Duration {
    (grace / 4).min(Duration::from_secs(5))
}

/// Polls until no registered session is left on this node (each was
/// resumed on another node, or ended).
async fn wait_for_hand_over(hub: &Hub) {
    while hub.census().registry.bound_sessions > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until no session is open (upgraded WebSockets are not tracked by
/// hyper's graceful shutdown, so the hub's count is the source of truth).
async fn wait_for_sessions(hub: &Hub) {
    while hub.census().open_sessions > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The router of `--listen`, and the admin's own when `--admin-listen`
/// gives it an address.
fn build_router(
    hub: &Hub,
    config: &Config,
    auth: &AuthPolicy,
) -> anyhow::Result<(Router, Option<Router>)> {
    let signaling = SignalingServer::new(GrpcDoor::new(hub.clone(), auth.clone()))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes.saturating_mul(4));
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

    let ws_door = WsDoor::new(
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
    let browser_doors = Router::new()
        .route("/ws", get(ws::upgrade))
        .with_state(ws_door)
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
        .merge(crate::web::router())
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
    let router = grpc_route(router, signaling);
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

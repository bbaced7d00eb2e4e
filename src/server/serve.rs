//! Serving: the accept loop (each connection admitted under the caps, TLS
//! if configured, then served by hyper), and then shutdown's steps, in
//! order: hand sessions over to other nodes (a drain), close every session
//! (`SHUTTING_DOWN`) and wait up to the grace period, let queued webhooks
//! out, leave the cluster.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::Gateway;
use crate::core::Hub;
use crate::server::config::Config;
use crate::server::connection::{self, ConnectionBounds, Finish};
use crate::server::listener::{Conn, ConnectionLimits};
use crate::telemetry;

/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for queued webhooks to go out.
const WEBHOOK_FLUSH: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// The listening socket and how each of its connections is served.
struct Acceptor {
    tcp: TcpListener,
    http: auto::Builder<TokioExecutor>,
    limits: Arc<ConnectionLimits>,
    bounds: ConnectionBounds,
    tls: Option<TlsAcceptor>,
    router: Router,
    /// Every connection's task.
    connections: TaskTracker,
    /// Tells the connections to finish (shutdown).
    finish: CancellationToken,
}

impl Acceptor {
    fn new(
        tcp: TcpListener,
        config: &Config,
        tls: Option<TlsAcceptor>,
        router: Router,
    ) -> Acceptor {
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout);
        http.http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(config.ping_interval)
            .keep_alive_timeout(config.ping_timeout)
            .max_concurrent_streams(config.http2_max_streams);
        Acceptor {
            tcp,
            http,
            limits: ConnectionLimits::new(config.max_connections, config.max_connections_per_ip),
            bounds: ConnectionBounds {
                first_request: config.header_read_timeout,
                idle: config.idle_timeout,
            },
            tls,
            router,
            connections: TaskTracker::new(),
            finish: CancellationToken::new(),
        }
    }

    /// Accepts connections until `stop` resolves.
    async fn run(&self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => self.admit(stream, peer),
                    Err(error) => {
                        warn!(%error, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    }
                },
            }
        }
    }

    /// Serves one accepted connection on a task of its own, if the caps
    /// admit it.
    fn admit(&self, stream: TcpStream, peer: std::net::SocketAddr) {
        let permit = match self.limits.admit(peer) {
            Ok(permit) => permit,
            Err(refusal) => {
                telemetry::metrics::refused(refusal.label());
                debug!(%peer, reason = refusal.label(), "connection refused");
                return;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%error, "cannot set TCP_NODELAY");
        }
        let (tls, http, router, bounds) = (
            self.tls.clone(),
            self.http.clone(),
            self.router.clone(),
            self.bounds,
        );
        let finish = self.finish.clone();
        self.connections.spawn(async move {
            let (finished, error) = match tls {
                None => {
                    let conn = Conn::plain(stream, permit);
                    connection::serve(conn, peer, http, router, bounds, finish).await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => {
                            let conn = Conn::tls(stream, permit);
                            connection::serve(conn, peer, http, router, bounds, finish).await
                        }
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

impl Gateway {
    /// Serves until `shutdown` resolves (or the admin API asks the node to
    /// drain), then closes every session (`SHUTTING_DOWN`) and waits up to
    /// the grace period for them to end.
    pub async fn serve<F>(self, listener: TcpListener, shutdown: F) -> io::Result<()>
    where
        F: Future<Output = ()> + Send,
    {
        let _stop_upkeep = self.start_upkeep().await?;
        let scheme = if self.tls.is_some() {
            "TLS"
        } else {
            "cleartext"
        };
        info!(address = %listener.local_addr()?, scheme, "signalgate listening (gRPC, /ws, /socket.io/, /healthz, /readyz, /metrics)");
        let acceptor = Acceptor::new(
            listener,
            &self.config,
            self.tls.clone(),
            self.router.clone(),
        );
        acceptor
            .run(async {
                tokio::select! {
                    () = shutdown => {}
                    () = self.hub.stop_requested() => {}
                }
            })
            .await;
        let Acceptor {
            tcp,
            connections,
            finish,
            ..
        } = acceptor;
        drop(tcp);
        self.shut_down(connections, finish).await;
        Ok(())
    }

    /// The background work that lives as long as the gateway serves:
    /// metrics upkeep, activity sampling, JWKS refreshes, and the admin
    /// listener of `--admin-listen`. Dropping the guard stops it.
    async fn start_upkeep(&self) -> io::Result<DropGuard> {
        let upkeep = CancellationToken::new();
        tokio::spawn(telemetry::metrics::run_upkeep(upkeep.clone()));
        tokio::spawn(self.hub.clone().sample_activity(upkeep.clone()));
        if let Some(keys) = self.auth.jwks() {
            tokio::spawn(Arc::clone(keys).run(upkeep.clone()));
        }
        if let (Some(admin), Some(address)) = (&self.admin, self.config.admin_listen) {
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
        Ok(upkeep.drop_guard())
    }

    /// Shutdown's steps, once no connection is accepted any more.
    async fn shut_down(&self, connections: TaskTracker, finish: CancellationToken) {
        let grace = self.config.shutdown_grace;
        let started = tokio::time::Instant::now();
        if self.hub.can_drain() && self.hub.another_node_answers().await {
            self.hand_over(grace, started).await;
        }
        info!("shutting down: closing every session");
        self.hub.shutdown();
        let grace = grace.saturating_sub(started.elapsed());
        finish.cancel();
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
    }

    /// A rolling restart: hands the sessions to the other nodes
    /// (docs/CLUSTER.md, "Rolling restarts"); what is not resumed elsewhere
    /// within 80% of the grace is closed with the rest. The last node
    /// standing has nobody to hand them to and does not get here.
    async fn hand_over(&self, grace: Duration, started: tokio::time::Instant) {
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

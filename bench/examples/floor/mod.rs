//! What the floor examples share (`relay_floor`, `grpc_floor`,
//! `grpc_h2_floor`, `socketio_floor`): the listening address, the relay counter served at
//! `/relayed`, and the gateway's way of serving connections (hyper-util's
//! connection builder with upgrades, `TCP_NODELAY`, a task per connection).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};

/// Messages relayed so far, served at `/relayed` so that a profile can be
/// divided by the relays made while it counted.
static RELAYED: AtomicU64 = AtomicU64::new(0);

/// Counts one relayed message.
pub fn relayed() {
    RELAYED.fetch_add(1, Ordering::Relaxed);
}

/// The address in the first argument, or 127.0.0.1 with `default_port`.
pub fn address(default_port: u16) -> SocketAddr {
    std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], default_port)))
}

/// Serves one accepted connection with `router` (upgrades allowed) until
/// it ends: how the gateway serves a connection.
pub async fn serve_one(stream: TcpStream, builder: Builder<TokioExecutor>, router: Router) {
    let service = TowerToHyperService::new(router);
    let _ = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .await;
}

/// Serves `router`, with `GET /relayed` added, on `address` until
/// accepting fails: each connection in a task of its own running
/// `connection` (usually [`serve_one`]).
pub async fn serve<C, F>(
    address: SocketAddr,
    builder: Builder<TokioExecutor>,
    router: Router,
    connection: C,
) -> std::io::Result<()>
where
    C: Fn(TcpStream, Builder<TokioExecutor>, Router) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(address).await?;
    let router = router.route(
        "/relayed",
        get(|| async { RELAYED.load(Ordering::Relaxed).to_string() }),
    );
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(connection(stream, builder.clone(), router.clone()));
    }
}

//! The client side of every door, in one place: tests, examples and the
//! load generator all speak to the gateway through [`Client`].
//!
//! A client works in the JSON envelope form of the WebSocket door
//! (`{"event", "data", "id"}`) whatever door it uses, so one scenario can run
//! over every door: the gRPC client converts envelopes to `ClientEvent`s and
//! `ServerEvent`s back to envelopes.

mod grpc;
mod socketio;
mod ws;

use std::net::{IpAddr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

use serde_json::Value;

pub use grpc::{GrpcClient, server_event_to_envelope};
pub use socketio::SocketIoClient;
pub use ws::WsClient;

/// The door of the gateway a client connects through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Door {
    /// The JSON WebSocket at `/ws`.
    Ws,
    /// The gRPC bidirectional stream `signalgate.v1.Signaling/Connect`.
    Grpc,
    /// Socket.IO at `/socket.io/`.
    SocketIo,
}

impl Door {
    /// Every door.
    pub const ALL: [Door; 3] = [Door::Ws, Door::Grpc, Door::SocketIo];

    /// `"grpc"`, `"ws"` or `"socketio"`: the gateway's own name for the
    /// door (its metrics, logs and admin API).
    pub const fn as_str(self) -> &'static str {
        match self {
            Door::Grpc => "grpc",
            Door::Ws => "ws",
            Door::SocketIo => "socketio",
        }
    }
}

impl std::fmt::Display for Door {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the server ended a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Closed {
    /// A WebSocket close frame (code and reason), or `None` for a close
    /// without a frame.
    WebSocket(Option<(u16, String)>),
    /// The gRPC stream ended with this status (`Ok` for a clean end).
    Grpc(tonic::Code, String),
    /// The Socket.IO session ended (server disconnect or transport close).
    SocketIo(String),
}

/// What a client receives.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    /// An event, as a JSON envelope.
    Event(Value),
    /// The connection ended.
    Closed(Closed),
}

/// Client failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// WebSocket failure.
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// gRPC transport failure.
    #[error("grpc transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// gRPC status at stream start.
    #[error("grpc status: {0}")]
    Status(#[from] tonic::Status),
    /// The envelope cannot be expressed on this door.
    #[error("cannot encode envelope for this door: {0}")]
    Unencodable(String),
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
    /// The TCP connection failed.
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
}

/// A connected client on any door.
#[derive(Debug)]
pub enum Client {
    /// Over `/ws`.
    Ws(WsClient),
    /// Over gRPC.
    Grpc(GrpcClient),
    /// Over Socket.IO.
    SocketIo(SocketIoClient),
}

/// How a client connects.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// An authentication token (JWT), presented the door's way: gRPC
    /// metadata, `?token=` on `/ws`, the Socket.IO handshake's `auth.token`.
    pub token: Option<String>,
    /// The local address to connect from (spreads load generators over
    /// 127.0.0.x so that many connections do not exhaust ephemeral ports).
    pub source: Option<IpAddr>,
    /// Socket.IO only: speak exactly the seed's wire (no `resume=1`, no
    /// sequence arguments), e.g. to measure the seed reference server.
    pub seed_wire: bool,
    /// gRPC only: keep no second descriptor of the connection for
    /// [`Client::abort`] (which then does nothing). A load generator
    /// holding thousands of connections sets it, so that each costs one
    /// file descriptor, not two.
    pub without_abort: bool,
}

/// WebSocket settings of the clients: small buffers (tungstenite's default
/// 128 KiB read buffer per connection would make a load generator holding
/// thousands of connections measure its own allocator).
pub(crate) fn websocket_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096)
}

/// A TCP connection to `address`, from `source` when given, with TCP_NODELAY.
pub(crate) async fn tcp(address: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket.connect(address).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl Client {
    /// Connects to the gateway at `address` through `door`.
    pub async fn connect(door: Door, address: SocketAddr) -> Result<Client, ClientError> {
        Client::connect_with(door, address, &ConnectOptions::default()).await
    }

    /// Connects with options (e.g. a token).
    pub async fn connect_with(
        door: Door,
        address: SocketAddr,
        options: &ConnectOptions,
    ) -> Result<Client, ClientError> {
        Ok(match door {
            Door::Ws => Client::Ws(WsClient::connect_with(address, options).await?),
            Door::Grpc => Client::Grpc(GrpcClient::connect_with(address, options).await?),
            Door::SocketIo => {
                Client::SocketIo(SocketIoClient::connect_with(address, options).await?)
            }
        })
    }

    /// The door this client uses.
    pub fn door(&self) -> Door {
        match self {
            Client::Ws(_) => Door::Ws,
            Client::Grpc(_) => Door::Grpc,
            Client::SocketIo(_) => Door::SocketIo,
        }
    }

    /// Sends one envelope `{"event", "data", "id"}`.
    pub async fn send(&mut self, envelope: &Value) -> Result<(), ClientError> {
        match self {
            Client::Ws(client) => client.send(envelope).await,
            Client::Grpc(client) => client.send(envelope).await,
            Client::SocketIo(client) => client.send(envelope).await,
        }
    }

    /// Queues one envelope; it is written at the latest by the next
    /// [`Client::flush`] (gRPC: as soon as the connection's task runs, as
    /// with [`Client::send`]).
    pub async fn feed(&mut self, envelope: &Value) -> Result<(), ClientError> {
        match self {
            Client::Ws(client) => client.feed(envelope).await,
            Client::Grpc(client) => client.send(envelope).await,
            Client::SocketIo(client) => client.feed(envelope).await,
        }
    }

    /// Writes what [`Client::feed`] queued. gRPC has no flush of its own
    /// (the HTTP/2 connection's task writes whatever the request stream
    /// holds when it runs): this yields twice, so that the body task and
    /// then the connection's task run and write what was queued before the
    /// caller queues more — one message per write when called after each.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        match self {
            Client::Ws(client) => client.flush().await,
            Client::Grpc(_) => {
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
                Ok(())
            }
            Client::SocketIo(client) => client.flush().await,
        }
    }

    /// An event or close that has already arrived, without waiting.
    pub fn try_recv(&mut self) -> Option<Result<Incoming, ClientError>> {
        futures_util::FutureExt::now_or_never(self.recv())
    }

    /// Receives the next event or the end of the connection.
    pub async fn recv(&mut self) -> Result<Incoming, ClientError> {
        match self {
            Client::Ws(client) => client.recv().await,
            Client::Grpc(client) => client.recv().await,
            Client::SocketIo(client) => client.recv().await,
        }
    }

    /// Ends the session cleanly (close frame / half-close) and waits for the
    /// server to finish the connection.
    pub async fn close(self) {
        match self {
            Client::Ws(client) => client.close().await,
            Client::Grpc(client) => client.close().await,
            Client::SocketIo(client) => client.close().await,
        }
    }

    /// Drops the connection abruptly, without a close handshake (no
    /// close frame, no half-close, no disconnect packet).
    pub fn abort(self) {
        match self {
            Client::Grpc(client) => client.abort(),
            other => drop(other),
        }
    }
}

/// Builds an envelope.
pub fn envelope(event: &str, data: Option<Value>, id: Option<u64>) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("event".into(), Value::String(event.into()));
    if let Some(data) = data {
        object.insert("data".into(), data);
    }
    if let Some(id) = id {
        object.insert("id".into(), Value::from(id));
    }
    Value::Object(object)
}

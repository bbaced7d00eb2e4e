//! The two kinds of Redis a cluster of gateways can share: one Redis
//! primary (`--redis-url`) or a Redis Cluster (`--redis-cluster-node`).
//! Everything above this module issues the same commands and scripts to
//! either; what differs is how they connect and how a node's channel is
//! subscribed and published to (sharded pub/sub on a Redis Cluster).

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, PushInfo, RedisFuture, Value};
use tokio::sync::mpsc;

use super::{ClusterError, RECONNECT_BACKOFF};
use crate::telemetry::metrics;

/// Where the registry lives. Its `Debug` hides any password in the URLs.
#[derive(Clone)]
pub enum RedisTarget {
    /// One Redis primary: `redis://host:port/db` (or `rediss://`).
    Single(String),
    /// A Redis Cluster, reached through any of these nodes' URLs.
    Cluster(Vec<String>),
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::telemetry::redact_url;
        match self {
            RedisTarget::Single(url) => f.debug_tuple("Single").field(&redact_url(url)).finish(),
            RedisTarget::Cluster(urls) => f
                .debug_tuple("Cluster")
                .field(&urls.iter().map(|url| redact_url(url)).collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// Frames waiting for the node's listener when it is on a Redis Cluster
/// (whose connection hands pushed messages over without waiting). A full
/// inbox drops the frame, counted in `signalgate_cluster_frames_dropped_total`;
/// whoever waits for its reply then times out and is answered
/// `UNAVAILABLE`, as for a lost frame.
const PUSH_INBOX: usize = 65_536;

/// The command connection, shared by every task (cheap to clone).
#[derive(Clone)]
pub(super) enum Commands {
    /// One Redis, reconnected on failure.
    Single(ConnectionManager),
    /// A Redis Cluster: commands follow their key's hash slot; the slot
    /// map is refreshed when a primary fails over.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Commands {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Commands::Single(connection) => connection.req_packed_command(cmd),
            Commands::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Commands::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Commands::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Commands::Single(connection) => connection.get_db(),
            Commands::Cluster(connection) => connection.get_db(),
        }
    }
}

/// How this node hears its channel.
pub(super) enum Listener {
    /// A dedicated `SUBSCRIBE` connection, opened again after an outage.
    Single(redis::Client),
    /// A Redis Cluster connection that `SSUBSCRIBE`s the channel (relay
    /// frames, sent with `SPUBLISH` to its shard only) and `SUBSCRIBE`s it
    /// (the frames the Lua scripts publish, which reach every shard); the
    /// library subscribes again after a failover.
    Cluster(ClusterListener),
}

/// The Redis Cluster listener's connection, which can be built again with
/// the slot map read afresh (a primary that hangs keeps this node's
/// subscription even after a replica took over its slots); every
/// connection it is built as pushes into the same inbox.
pub(super) struct ClusterListener {
    connection: std::sync::Mutex<ClusterConnection>,
    urls: Vec<String>,
    command_timeout: Duration,
    inbox: mpsc::Sender<PushInfo>,
}

impl ClusterListener {
    async fn connect(
        urls: &[String],
        command_timeout: Duration,
        inbox: mpsc::Sender<PushInfo>,
    ) -> Result<ClusterConnection, ClusterError> {
        cluster_builder(urls, command_timeout)
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(PushInbox(inbox))
            .build()
            .map_err(|e| ClusterError::InvalidUrl(e.to_string()))?
            .get_async_connection()
            .await
            .map_err(unreachable)
    }

    /// The connection to subscribe on.
    pub(super) fn connection(&self) -> ClusterConnection {
        crate::sync::lock(&self.connection).clone()
    }

    /// A new connection with the slot map read afresh, pushing into the same
    /// inbox; the caller subscribes on it, then [`Self::replace`]s the old
    /// one with it (which keeps hearing until then).
    pub(super) async fn rebuild(&self) -> Result<ClusterConnection, ClusterError> {
        let attempt =
            ClusterListener::connect(&self.urls, self.command_timeout, self.inbox.clone());
        tokio::time::timeout(self.command_timeout * 3, attempt)
            .await
            .map_err(|_| ClusterError::Unreachable("timed out".into()))?
    }

    /// Puts `connection` in place of the current one (which closes).
    pub(super) fn replace(&self, connection: ClusterConnection) {
        *crate::sync::lock(&self.connection) = connection;
    }
}

/// A node's pushed messages on a Redis Cluster.
pub(super) type Pushes = mpsc::Receiver<PushInfo>;

/// The bounded sender a cluster connection pushes messages into.
struct PushInbox(mpsc::Sender<PushInfo>);

impl redis::aio::AsyncPushSender for PushInbox {
    fn send(&self, info: PushInfo) -> Result<(), redis::aio::SendError> {
        match self.0.try_send(info) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::cluster_frame_dropped();
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(redis::aio::SendError),
        }
    }
}

/// Opened connections: commands, the listener, and (on a Redis Cluster)
/// the messages pushed to the listener.
pub(super) struct Connections {
    pub(super) commands: Commands,
    pub(super) listener: Listener,
    pub(super) pushes: Option<Pushes>,
}

/// Connects to `target`, failing if it does not answer within a few
/// command timeouts.
pub(super) async fn connect(
    target: &RedisTarget,
    command_timeout: Duration,
) -> Result<Connections, ClusterError> {
    let attempt = async {
        match target {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url.as_str())
                    .map_err(|e| ClusterError::InvalidUrl(e.to_string()))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(command_timeout))
                    .set_response_timeout(Some(command_timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(RECONNECT_BACKOFF);
                let commands = ConnectionManager::new_with_config(client.clone(), config)
                    .await
                    .map_err(unreachable)?;
                Ok(Connections {
                    commands: Commands::Single(commands),
                    listener: Listener::Single(client),
                    pushes: None,
                })
            }
            RedisTarget::Cluster(urls) => {
                let commands = cluster_commands(urls, command_timeout).await?;
                let (inbox, pushes) = mpsc::channel(PUSH_INBOX);
                let listener = ClusterListener {
                    connection: std::sync::Mutex::new(
                        ClusterListener::connect(urls, command_timeout, inbox.clone()).await?,
                    ),
                    urls: urls.clone(),
                    command_timeout,
                    inbox,
                };
                Ok(Connections {
                    commands: Commands::Cluster(commands),
                    listener: Listener::Cluster(listener),
                    pushes: Some(pushes),
                })
            }
        }
    };
    tokio::time::timeout(command_timeout * 3, attempt)
        .await
        .map_err(|_| ClusterError::Unreachable("timed out".into()))?
}

/// How long a Redis Cluster node has to accept a connection and answer its
/// handshake: a quarter of `--redis-timeout` (250 ms by default), at least
/// 50 ms. redis-rs waits for every seed node, and for every node in the
/// slot map, before a connection is ready, so a primary that hangs (paused,
/// or cut off without a reset) holds each rebuild of the connections for
/// this long; a failover is found about that much sooner. Connecting takes
/// a round trip or two (three or four with TLS), well within this on a
/// network where Redis answers commands within `--redis-timeout`.
fn cluster_connect_timeout(command_timeout: Duration) -> Duration {
    (command_timeout / 4).max(Duration::from_millis(50))
}

/// How every Redis Cluster connection of a node is built.
fn cluster_builder(urls: &[String], command_timeout: Duration) -> ClusterClientBuilder {
    ClusterClientBuilder::new(urls.iter().map(String::as_str))
        .connection_timeout(cluster_connect_timeout(command_timeout))
        .response_timeout(command_timeout)
        .retries(2)
        .min_retry_wait(50)
        .max_retry_wait(RECONNECT_BACKOFF.as_millis() as u64)
}

/// A Redis Cluster command connection: reads the slot map afresh from
/// `urls`.
async fn cluster_commands(
    urls: &[String],
    command_timeout: Duration,
) -> Result<ClusterConnection, ClusterError> {
    cluster_builder(urls, command_timeout)
        .build()
        .map_err(|e| ClusterError::InvalidUrl(e.to_string()))?
        .get_async_connection()
        .await
        .map_err(unreachable)
}

/// A new command connection to a Redis Cluster, with the slot map read
/// afresh (None for one Redis, whose connection manager reconnects by
/// itself). redis-rs retries a command that timed out on the same node and
/// only reads the slot map again on a redirect or a dropped connection, so
/// a primary that hangs without closing its connections (paused, or cut
/// off) keeps every command for its slots there even after a replica took
/// over; a connection built afresh asks the cluster where the slots are now.
pub(super) async fn rebuilt_commands(
    target: &RedisTarget,
    command_timeout: Duration,
) -> Option<Result<Commands, ClusterError>> {
    let RedisTarget::Cluster(urls) = target else {
        return None;
    };
    let attempt = cluster_commands(urls, command_timeout);
    Some(
        tokio::time::timeout(command_timeout * 3, attempt)
            .await
            .map_err(|_| ClusterError::Unreachable("timed out".into()))
            .and_then(|built| built.map(Commands::Cluster)),
    )
}

fn unreachable(error: redis::RedisError) -> ClusterError {
    ClusterError::Unreachable(error.to_string())
}

//! The node's own work with Redis: one command with a deadline (a failure
//! marks Redis unreachable), freeing a binding, publishing a frame, and
//! finding where a session's peer is.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::bus::Frame;
use super::channel::RemotePeer;
use super::connection::{self, Commands, Listener};
use super::keys::{member, split_holder};
use super::{Inner, lock, scripts};
use crate::core::{Peer, RegistryError, Role, RouteError, SessionHandle, SessionId, Uid};
use crate::telemetry::metrics;

/// Marks a binding being written (see [`Inner::binding_in_flight`]).
pub(super) struct BindingInFlight {
    inner: Arc<Inner>,
    session: SessionId,
}

impl Drop for BindingInFlight {
    fn drop(&mut self) {
        lock(&self.inner.binding_now).remove(&self.session);
    }
}

/// How often at most the Redis Cluster connections are rebuilt while
/// commands fail: a replica's promotion is found within this long (two
/// rebuilds a second at most, each reading the slot map from one node).
const REBUILD_INTERVAL: Duration = Duration::from_millis(500);

impl Inner {
    /// Whether requests may be tried: subscribed to this node's channel,
    /// and (one Redis) its heartbeat succeeding. On a Redis Cluster each
    /// request stands or falls with the shards its keys live on.
    pub(super) fn available(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
            && (self.sharded || self.heartbeat_ok.load(Ordering::Acquire))
    }

    pub(super) fn unavailable(&self) -> RegistryError {
        RegistryError::Unavailable("Redis is unreachable".into())
    }

    /// Runs one Redis operation with a deadline; a failure marks Redis
    /// unreachable until the heartbeat succeeds again.
    pub(super) async fn call<T>(
        &self,
        operation: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RegistryError> {
        let failure = match tokio::time::timeout(self.command_timeout, operation).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => error.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        if self.sharded {
            // One shard failing (a primary failing over) is that shard's:
            // only requests for its keys fail, each within this deadline.
            if !self.shard_trouble.swap(true, Ordering::AcqRel) {
                warn!(node = %self.node, error = %failure, "a Redis Cluster command failed: requests on that shard fail until it serves again");
            }
            self.rebuild_wanted.notify_one();
        } else if self.heartbeat_ok.swap(false, Ordering::AcqRel) {
            warn!(node = %self.node, error = %failure, "Redis unreachable: cross-node relays and registrations fail until it returns");
        }
        self.beat_now.notify_one();
        Err(RegistryError::Unavailable(failure))
    }

    pub(super) fn connection(&self) -> Commands {
        lock(&self.commands).clone()
    }

    /// Rebuilds the Redis Cluster connections each time a command fails,
    /// at most once per [`REBUILD_INTERVAL`], until the node stops.
    pub(super) async fn rebuilder(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = self.rebuild_wanted.notified() => {}
                () = self.stop.cancelled() => return,
            }
            self.rebuild_connections().await;
            tokio::select! {
                () = tokio::time::sleep(REBUILD_INTERVAL) => {}
                () = self.stop.cancelled() => return,
            }
        }
    }

    /// Builds the Redis Cluster connections again — commands, then the
    /// listener, subscribed again — with the slot map read afresh (see
    /// `connection::rebuilt_commands`).
    async fn rebuild_connections(&self) {
        // Both at once: each may wait out a connection timeout on the hung
        // primary while it reads the slot map.
        let listener = async {
            match &self.listener {
                Listener::Cluster(listener) => Some(listener.rebuild().await),
                Listener::Single(_) => None,
            }
        };
        let (commands, listener) = tokio::join!(
            connection::rebuilt_commands(&self.target, self.command_timeout),
            listener
        );
        match commands {
            Some(Ok(commands)) => {
                *lock(&self.commands) = commands;
                metrics::redis_connection_rebuilt();
                info!(node = %self.node, "rebuilt the Redis Cluster connections: the slot map was read afresh");
            }
            Some(Err(error)) => debug!(%error, "rebuilding the Redis Cluster connections failed"),
            None => {}
        }
        // The subscription to this node's channel may sit on the hung
        // primary too: subscribe again through the listener that knows
        // where the channel's slot is now.
        match listener {
            Some(Ok(())) => {
                if let Err(error) = self.subscribe().await {
                    debug!(%error, "subscribing again on a rebuilt listener failed");
                }
            }
            Some(Err(error)) => debug!(%error, "rebuilding the Redis Cluster listener failed"),
            None => {}
        }
    }

    /// This node's registry entry for `session`: `<node>/<session>`.
    pub(super) fn holder(&self, session: SessionId) -> String {
        format!("{}/{session}", self.node)
    }

    /// Marks `session`'s binding as being written until the guard drops.
    pub(super) fn binding_in_flight(
        self: &Arc<Self>,
        session: &Arc<SessionHandle>,
    ) -> BindingInFlight {
        lock(&self.binding_now).insert(session.id(), Arc::clone(session));
        BindingInFlight {
            inner: Arc::clone(self),
            session: session.id(),
        }
    }

    /// Whether `session`'s binding is being written now.
    pub(super) fn is_binding(&self, session: SessionId) -> bool {
        lock(&self.binding_now).contains_key(&session)
    }

    /// The session `session` of (uid, role) on this node: in the local
    /// table, or still binding (its Redis binding written, its local one
    /// not yet: a peer's registration may already have seen it).
    pub(super) fn local_or_binding(
        &self,
        uid: &Uid,
        role: Role,
        session: SessionId,
    ) -> Option<Arc<SessionHandle>> {
        self.local
            .get(uid, role, Some(session))
            .or_else(|| lock(&self.binding_now).get(&session).cloned())
    }

    /// Adds a binding to this node's sessions set, before it is written.
    pub(super) async fn index_binding(&self, binding: &str) -> Result<(), RegistryError> {
        let mut connection = self.connection();
        self.call(
            redis::cmd("SADD")
                .arg(self.keys.sessions(&self.node))
                .arg(binding)
                .query_async::<i64>(&mut connection),
        )
        .await
        .map(drop)
    }

    /// Removes a binding from `node`'s sessions set once it is freed. Best
    /// effort: a member left behind is skipped by whoever reaps the node.
    pub(super) async fn unindex_binding(&self, node: &str, binding: &str) {
        let mut connection = self.connection();
        let _ = self
            .call(
                redis::cmd("SREM")
                    .arg(self.keys.sessions(node))
                    .arg(binding)
                    .query_async::<i64>(&mut connection),
            )
            .await;
    }

    /// Frees (uid, role) in Redis if `session` still holds it (`UNBIND`):
    /// `(status, peer)` as the script documents.
    pub(super) async fn unbind_in_redis(
        &self,
        uid: &Uid,
        role: Role,
        session: SessionId,
    ) -> Result<(i64, String), RegistryError> {
        let mut connection = self.connection();
        let answer = self
            .call(
                scripts::UNBIND
                    .key(self.keys.uid(uid))
                    .arg(role.as_str())
                    .arg(role.peer().as_str())
                    .arg(self.holder(session))
                    .invoke_async(&mut connection),
            )
            .await?;
        self.unindex_binding(&self.node, &member(uid, role, session))
            .await;
        Ok(answer)
    }

    /// A peer from a registry entry, or `None` if it names nobody reachable.
    pub(super) fn peer_from(self: &Arc<Self>, holder: &str, uid: &Uid, role: Role) -> Option<Peer> {
        self.peer_seen(holder, uid, role, false)
    }

    /// [`Inner::peer_from`], with whether Redis showed the peer away.
    pub(super) fn peer_seen(
        self: &Arc<Self>,
        holder: &str,
        uid: &Uid,
        role: Role,
        away: bool,
    ) -> Option<Peer> {
        let (node, session) = split_holder(holder)?;
        if node == self.node {
            if let Some(local) = self.local_or_binding(uid, role, session) {
                return Some(Peer::local(local));
            }
            // Handed over for a resume and not yet bound on its new node:
            // frames go through this node's channel, which holds and then
            // forwards them.
            if !lock(&self.moved).contains_key(&session) {
                return None;
            }
        }
        Some(Peer::remote(Arc::new(RemotePeer {
            inner: Arc::clone(self),
            node: node.to_owned(),
            session,
            uid: uid.clone(),
            role,
            away,
            cached_for: None,
        })))
    }

    pub(super) async fn publish(&self, node: &str, frame: Frame) -> Result<i64, RegistryError> {
        metrics::cluster_frame(frame.kind(), "out");
        let payload = frame
            .encode()
            .map_err(|e| RegistryError::Unavailable(e.to_string()))?;
        // On a Redis Cluster the frame goes to the channel's shard only.
        let command = match *lock(&self.commands) {
            Commands::Single(_) => "PUBLISH",
            Commands::Cluster(_) => "SPUBLISH",
        };
        let mut connection = self.connection();
        self.call(
            redis::cmd(command)
                .arg(self.keys.channel(node))
                .arg(payload)
                .query_async::<i64>(&mut connection),
        )
        .await
    }

    /// Asks Redis who holds the other role of `session`'s uid (checking
    /// that `session` still holds its own), and caches a remote answer.
    pub(super) async fn lookup_peer(
        self: &Arc<Self>,
        uid: &Uid,
        role: Role,
        session: SessionId,
    ) -> Result<Peer, RouteError> {
        let inner = self;
        let mut connection = inner.connection();
        let (mine, peer, peer_away): (Option<String>, Option<String>, Option<String>) = inner
            .call(
                redis::cmd("HMGET")
                    .arg(inner.keys.uid(uid))
                    .arg(role.as_str())
                    .arg(role.peer().as_str())
                    .arg(format!("{}:away", role.peer().as_str()))
                    .query_async(&mut connection),
            )
            .await?;
        let me = inner.holder(session);
        if mine.as_deref().is_some_and(|holder| holder != me) {
            return Err(RouteError::NotOwner);
        }
        let peer = peer.ok_or(RouteError::NoPeer)?;
        if let Some((node, peer_session)) = split_holder(&peer)
            && node != inner.node
        {
            inner
                .local
                .set_route(uid, role, session, Some((node.to_owned(), peer_session)));
        }
        inner
            .peer_seen(&peer, uid, role.peer(), peer_away.is_some())
            .ok_or(RouteError::NoPeer)
    }
}

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

/// The pause between two rebuilds of the Redis Cluster connections while
/// commands fail: a replica's promotion is found within this long plus one
/// rebuild (five rebuilds a second at most, each reading the slot map from
/// one node and connecting to the shards). Until then every command for the
/// failed shard waits out `--redis-timeout` on the old primary.
const REBUILD_INTERVAL: Duration = Duration::from_millis(200);

/// How often a node on a Redis Cluster checks that its own subscription is
/// on the primary that now serves its channel's slot (see
/// [`Inner::prober`]): one `SPUBLISH` of a few bytes each time.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);

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
            self.commands_stale.store(true, Ordering::Release);
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

    /// Rebuilds the Redis Cluster command connection each time a command
    /// fails, and the listener each time this node's probe goes unheard, at
    /// most once per [`REBUILD_INTERVAL`], until the node stops.
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

    /// Checks, every [`PROBE_INTERVAL`], that this node still hears its
    /// channel on a Redis Cluster, and only once: `SPUBLISH`es a probe to
    /// it, which counts the subscribers on the primary that serves the
    /// channel's slot now (a probe heard twice is the listener's concern:
    /// see `echo`).
    /// None there means this node's `SSUBSCRIBE` sits on a primary that
    /// hung and was replaced (a paused one keeps its connections, so the
    /// library never hears of it): the listener is rebuilt and the channel
    /// subscribed again. Without the probe a node whose own commands all go
    /// to other shards would hear nothing from the other nodes until the
    /// hung primary woke up. A probe that fails means the channel's own
    /// shard is failing: the command connection is rebuilt, as for any
    /// failed command (see [`Inner::call`]), and the listener too, which
    /// is most likely on that shard as well.
    pub(super) async fn prober(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(PROBE_INTERVAL) => {}
                () = self.stop.cancelled() => return,
            }
            if !self.subscribed.load(Ordering::Acquire) {
                continue;
            }
            let token = self.next_token.fetch_add(1, Ordering::Relaxed);
            match self.publish(&self.node, Frame::Probe { token }).await {
                Ok(0) => {
                    metrics::cluster_probe_unheard();
                    info!(node = %self.node, "this node's channel has no subscriber on its primary: subscribing again");
                }
                Ok(_) => continue,
                // The channel's own shard is failing: the listener is likely
                // on it too (`call` has the command connection rebuilt).
                Err(_) => {}
            }
            self.listener_stale.store(true, Ordering::Release);
            self.rebuild_wanted.notify_one();
        }
    }

    /// Builds again what is stale: the command connection (a command
    /// failed) with the slot map read afresh (see
    /// `connection::rebuilt_commands`), and the listener (the probe went
    /// unheard), subscribed again through a connection that knows where the
    /// channel's slot is now. A listener that still hears is left alone:
    /// replacing it would lose what is published meanwhile.
    async fn rebuild_connections(&self) {
        let commands_stale = self.commands_stale.swap(false, Ordering::AcqRel);
        let listener_stale = self.listener_stale.swap(false, Ordering::AcqRel);
        // Both at once: each may wait out a connection timeout on the hung
        // primary while it reads the slot map.
        let listener = async {
            match &self.listener {
                Listener::Cluster(listener) if listener_stale => {
                    Some(match listener.rebuild().await {
                        Ok(connection) => self
                            .resubscribe_rebuilt(listener, connection)
                            .await
                            .map_err(|error| error.to_string()),
                        Err(error) => Err(error.to_string()),
                    })
                }
                _ => None,
            }
        };
        let commands = async {
            if commands_stale {
                connection::rebuilt_commands(&self.target, self.command_timeout).await
            } else {
                None
            }
        };
        let (commands, listener) = tokio::join!(commands, listener);
        match commands {
            Some(Ok(commands)) => {
                *lock(&self.commands) = commands;
                metrics::redis_connection_rebuilt();
                info!(node = %self.node, "rebuilt the Redis Cluster command connection: the slot map was read afresh");
            }
            Some(Err(error)) => debug!(%error, "rebuilding the Redis Cluster connections failed"),
            None => {}
        }
        match listener {
            Some(Ok(())) => {
                info!(node = %self.node, "subscribed again on a rebuilt Redis Cluster listener");
            }
            Some(Err(error)) => {
                debug!(%error, "rebuilding the Redis Cluster listener failed; trying again");
                self.listener_stale.store(true, Ordering::Release);
                self.rebuild_wanted.notify_one();
            }
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

//! Several gateway nodes sharing one pairing registry over Redis
//! (`--redis-url`, or a Redis Cluster with `--redis-cluster-node`; the data
//! model and guarantees are in docs/CLUSTER.md).
//!
//! [`RedisRegistry`] implements the core's [`Registry`]: Redis holds which
//! node and session own each (uid, role); Lua scripts make bind, unbind,
//! replacement and the reaping of dead nodes atomic. Events for a peer on
//! another node travel as frames on that node's pub/sub channel; a relay
//! waits for the receiving node's reply, so its sender learns about a slow
//! or vanished peer exactly as on one node. This node's own sessions are
//! mirrored in a local table, which serves pairs whose two
//! sessions are both here without a round trip (and through an outage).
//!
//! - `bus`: the frames nodes exchange; `scripts`: the Lua scripts and
//!   the Redis data model; `keys`: the names of its keys and channels;
//!   `local`: this node's own sessions.
//! - `channel`: this node's pub/sub channel in, and remote peers out;
//!   `connection`: one Redis or a Redis Cluster.
//! - `inner`: the node's Redis calls and where a peer is (routing).
//! - `membership`: heartbeat, reaping dead nodes, re-asserting after an
//!   outage; `handover`: the old node's side of a cross-node resume.

mod bus;
mod channel;
mod connection;
mod echo;
mod handover;
mod inner;
mod keys;
mod local;
mod membership;
mod recent;
mod scripts;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::core::admin::{NodeAnswers, NodeQuery};
use crate::core::handover::{ANNOUNCE_WAIT_TURN, ANNOUNCE_WAIT_TURNS};
use crate::core::{
    Bound, ErrorCode, Identity, NodeLink, Peer, Registry, RegistryCensus, RegistryError, Rejection,
    Role, RouteError, SessionExport, SessionExporter, SessionHandle, SessionId, Uid,
};
use crate::sync::lock;
use bus::{Answer, Frame};
use channel::{RemotePeer, Unanswered};
pub use connection::RedisTarget;
use connection::{Commands, Listener};
use handover::Moved;
use keys::{Keys, member, split_holder};
use local::LocalTable;

/// Pause between attempts to reach Redis again.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);
/// Frames held at most per handed-over session while its new node binds it.
const MAX_HELD_FRAMES: usize = 1024;
/// How long frames wait for a new node to confirm a handed-over session.
const HOLD_FOR_NEW_NODE: Duration = Duration::from_secs(5);
/// How long frames for a handed-over session are forwarded to its new node.
const FORWARD_FOR: Duration = Duration::from_secs(30);
/// How long a `kill` for a session not bound here yet is remembered.
const EARLY_KILL_MEMORY: Duration = Duration::from_secs(10);
/// Bindings of a dead node freed per script call (keeps Redis responsive).
const REAP_BATCH: usize = 500;

/// How to join the cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The Redis primary, or the Redis Cluster, the nodes share.
    pub redis: RedisTarget,
    /// Prefix of every key and channel.
    pub prefix: String,
    /// Lifetime of this node's heartbeat; it is renewed every third of it.
    pub node_ttl: Duration,
    /// How long one Redis command may take before it fails (and its
    /// request is answered `UNAVAILABLE`): `--redis-timeout`.
    pub command_timeout: Duration,
    /// How long a cross-node request (a relay's delivery, a hand-over, an
    /// admin query) waits for the other node's reply:
    /// `--cluster-reply-timeout`.
    pub reply_timeout: Duration,
}

/// Failure to join the cluster at startup.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The URL is not a Redis URL.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// Redis did not answer.
    #[error("cannot reach Redis: {0}")]
    Unreachable(String),
}

struct Inner {
    node: String,
    keys: Keys,
    /// How this node hears its channel.
    listener: Listener,
    /// The command connection, replaced when a Redis Cluster's commands
    /// keep failing (`Inner::rebuilder`).
    commands: Mutex<Commands>,
    /// Where Redis is, to build the command connection again.
    target: connection::RedisTarget,
    /// Wakes the task that rebuilds the Redis Cluster connections
    /// (`Inner::rebuilder`): a command failed, or this node's probe found
    /// nobody listening on its channel.
    rebuild_wanted: Notify,
    /// A command failed since the last rebuild: build the command
    /// connection again.
    commands_stale: AtomicBool,
    /// This node's probe went unheard since the last rebuild: build the
    /// listener again and subscribe (only then: frames published while a
    /// listener is being replaced are lost).
    listener_stale: AtomicBool,
    local: LocalTable,
    node_ttl: Duration,
    /// The deadline of one Redis command.
    command_timeout: Duration,
    /// The deadline of another node's reply.
    reply_timeout: Duration,
    /// Requests waiting for another node's `reply`, by token.
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    /// What this node's resume tokens start with: `<node>.`.
    token_tag: String,
    /// The hub, to hand this node's sessions to others.
    exporter: std::sync::OnceLock<std::sync::Weak<dyn SessionExporter>>,
    next_token: AtomicU64,
    subscribed: AtomicBool,
    heartbeat_ok: AtomicBool,
    /// On a Redis Cluster: a command failed on some shard since the last
    /// heartbeat (whose next success re-asserts this node's bindings). A
    /// failing shard refuses only the requests whose keys it serves; the
    /// registry as a whole stays available.
    sharded: bool,
    shard_trouble: AtomicBool,
    reassert: Notify,
    beat_now: Notify,
    stop: CancellationToken,
    /// Sessions that ended while Redis was unreachable: their entries are
    /// freed and their peers told `byebye` once Redis is back.
    pending_releases: Mutex<Vec<(Uid, Role, SessionId)>>,
    /// `kill` frames that arrived before their session's local binding (its
    /// Redis binding and the replacement raced ahead). Also the lock that
    /// orders a `kill` against a local bind.
    early_kills: Mutex<HashMap<SessionId, (ErrorCode, std::time::Instant)>>,
    /// Frames already handled, by asker: a retried Redis command's copy is dropped.
    recent_frames: Mutex<recent::RecentFrames>,
    /// This node's probes as it heard them: twice means subscribed twice.
    probe_echoes: Mutex<echo::ProbeEchoes>,
    /// Sessions this node handed to another for a resume: frames still
    /// addressed here are held until the new node has bound the session,
    /// then forwarded there.
    moved: Mutex<HashMap<SessionId, Moved>>,
    /// Sessions whose binding is being written (indexed, not yet in the
    /// local table): a re-assertion leaves their index members alone, and
    /// events for them are handed to the session (which holds them until
    /// its `registered` is queued).
    binding_now: Mutex<HashMap<SessionId, Arc<SessionHandle>>>,
}

/// The pairing registry shared by every node over Redis.
pub struct RedisRegistry {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRegistry")
            .field("node", &self.inner.node)
            .field("prefix", &self.inner.keys.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisRegistry {
    /// Connects to Redis, subscribes to this node's channel and starts the
    /// heartbeat. Fails if Redis cannot be reached now; later outages are
    /// survived (see docs/CLUSTER.md).
    pub async fn connect(config: ClusterConfig) -> Result<RedisRegistry, ClusterError> {
        let connections = connection::connect(&config.redis, config.command_timeout).await?;
        let sharded = matches!(connections.commands, Commands::Cluster(_));
        let node = format!("{:016x}", rand::random::<u64>());
        let inner = Arc::new(Inner {
            token_tag: format!("{node}."),
            exporter: std::sync::OnceLock::new(),
            node,
            keys: Keys {
                prefix: config.prefix,
            },
            listener: connections.listener,
            commands: Mutex::new(connections.commands),
            target: config.redis.clone(),
            rebuild_wanted: Notify::new(),
            commands_stale: AtomicBool::new(false),
            listener_stale: AtomicBool::new(false),
            local: LocalTable::new(),
            node_ttl: config.node_ttl.max(Duration::from_millis(300)),
            command_timeout: config.command_timeout.max(Duration::from_millis(10)),
            reply_timeout: config.reply_timeout.max(Duration::from_millis(10)),
            pending: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            subscribed: AtomicBool::new(false),
            heartbeat_ok: AtomicBool::new(false),
            sharded,
            shard_trouble: AtomicBool::new(false),
            reassert: Notify::new(),
            beat_now: Notify::new(),
            stop: CancellationToken::new(),
            pending_releases: Mutex::new(Vec::new()),
            early_kills: Mutex::new(HashMap::new()),
            recent_frames: Mutex::new(recent::RecentFrames::default()),
            probe_echoes: Mutex::new(echo::ProbeEchoes::default()),
            moved: Mutex::new(HashMap::new()),
            binding_now: Mutex::new(HashMap::new()),
        });
        let pubsub = inner
            .subscribe()
            .await
            .map_err(|e| ClusterError::Unreachable(e.to_string()))?;
        inner
            .beat()
            .await
            .map_err(|e| ClusterError::Unreachable(e.to_string()))?;
        inner.heartbeat_ok.store(true, Ordering::Release);
        tokio::spawn(Arc::clone(&inner).listen(Some(pubsub), connections.pushes));
        tokio::spawn(Arc::clone(&inner).heartbeat());
        if inner.sharded {
            tokio::spawn(Arc::clone(&inner).rebuilder());
            tokio::spawn(Arc::clone(&inner).prober());
        }
        tokio::spawn(Arc::clone(&inner).reasserter());
        info!(node = %inner.node, prefix = %inner.keys.prefix, ttl_ms = inner.node_ttl.as_millis() as u64, "joined the cluster over Redis");
        Ok(RedisRegistry { inner })
    }
}

impl Drop for RedisRegistry {
    /// Stops the background tasks (they hold only the shared state) even
    /// when the gateway never served and so never left.
    fn drop(&mut self) {
        self.inner.stop.cancel();
    }
}

#[async_trait]
impl Registry for RedisRegistry {
    async fn bind(
        &self,
        uid: &Uid,
        role: Role,
        session: &Arc<SessionHandle>,
    ) -> Result<Bound, RegistryError> {
        let inner = &self.inner;
        if !inner.available() {
            return Err(inner.unavailable());
        }
        let me = inner.holder(session.id());
        let binding = member(uid, role, session.id());
        // Indexed first (a dying node's bindings are found through its
        // sessions set); the guard keeps a re-assertion from taking the
        // member for a stale one before the binding is written.
        let _in_flight = inner.binding_in_flight(session);
        inner.index_binding(&binding).await?;
        let mut connection = inner.connection();
        let (previous, peer, epoch, peer_away, previous_away): (String, String, u64, u8, u8) =
            inner
                .call(
                    scripts::BIND
                        .key(inner.keys.uid(uid))
                        .arg(role.as_str())
                        .arg(role.peer().as_str())
                        .arg(&me)
                        .arg(&inner.node)
                        .arg(&inner.keys.prefix)
                        .arg(uid.as_str())
                        .invoke_async(&mut connection),
                )
                .await?;
        let (mut local, killed_early) = {
            let mut early = lock(&inner.early_kills);
            let local = inner.local.bind(uid, role, session, epoch);
            (local, early.remove(&session.id()).is_some())
        };
        if killed_early {
            // A newer registration elsewhere already replaced this one.
            inner.local.unbind(uid, role, session.id());
            local.replaced = Some(Arc::clone(session));
        }
        let peer = match split_holder(&peer) {
            // A peer whose own bind here is still in flight is not in the
            // local table yet: `peer_seen` finds it among those binding.
            Some((node, _)) if node == inner.node => local
                .peer
                .map(Peer::local)
                .or_else(|| inner.peer_seen(&peer, uid, role.peer(), peer_away == 1)),
            Some(_) => inner.peer_seen(&peer, uid, role.peer(), peer_away == 1),
            None => None,
        };
        let replaced_remote = match split_holder(&previous) {
            Some((node, replaced)) if node != inner.node => {
                // The replaced binding leaves its node's index (that node
                // would skip it anyway: the hash names another session).
                inner
                    .unindex_binding(node, &member(uid, role, replaced))
                    .await;
                true
            }
            _ => false,
        };
        Ok(Bound {
            peer,
            replaced: local.replaced,
            replaced_remote_away: replaced_remote && previous_away == 1,
        })
    }

    async fn unbind(
        &self,
        uid: &Uid,
        role: Role,
        session: SessionId,
    ) -> Result<Option<Peer>, RegistryError> {
        let inner = &self.inner;
        let local_peer = inner.local.unbind(uid, role, session);
        if !inner.available() {
            // Redis is told when it is back (and a remote peer then hears
            // `byebye`); a peer here hears it now.
            lock(&inner.pending_releases).push((uid.clone(), role, session));
            return Ok(local_peer.flatten().map(Peer::local));
        }
        Ok(match inner.unbind_in_redis(uid, role, session).await {
            // Freed: tell whoever holds the other role, wherever it is.
            Ok((1, peer)) => inner.peer_from(&peer, uid, role.peer()),
            // Replaced by a newer session: nobody to tell.
            Ok((0, _)) => None,
            // Redis lost the entry (restarted empty); trust this node.
            Ok((_, peer)) => match local_peer.flatten() {
                Some(local) => Some(Peer::local(local)),
                None => inner.peer_from(&peer, uid, role.peer()),
            },
            Err(_) => {
                lock(&inner.pending_releases).push((uid.clone(), role, session));
                local_peer.flatten().map(Peer::local)
            }
        })
    }

    async fn peer_of(&self, uid: &Uid, role: Role, session: SessionId) -> Result<Peer, RouteError> {
        match self.peer_of_now(uid, role, session) {
            Some(answer) => answer,
            None => self.inner.lookup_peer(uid, role, session).await,
        }
    }

    fn peer_of_now(
        &self,
        uid: &Uid,
        role: Role,
        session: SessionId,
    ) -> Option<Result<Peer, RouteError>> {
        let inner = &self.inner;
        match inner.local.local_peer(uid, role, session) {
            Err(()) => return Some(Err(RouteError::NotOwner)),
            Ok(Some(peer)) => return Some(Ok(Peer::local(peer))),
            Ok(None) => {}
        }
        if !inner.available() {
            return Some(Err(RouteError::Registry(inner.unavailable())));
        }
        let (node, peer) = inner.local.route(uid, role, session)?;
        Some(Ok(Peer::remote(Arc::new(RemotePeer {
            inner: Arc::clone(inner),
            node,
            session: peer,
            uid: uid.clone(),
            role: role.peer(),
            away: false,
            cached_for: Some(session),
        }))))
    }

    fn census(&self) -> RegistryCensus {
        self.inner.local.census()
    }

    fn each_local_session(&self, visit: &mut dyn FnMut(&Uid, Role, &Arc<SessionHandle>)) {
        self.inner.local.each(visit);
    }

    fn local_session(&self, uid: &Uid, role: Role) -> Option<Arc<SessionHandle>> {
        self.inner.local.get(uid, role, None)
    }

    fn is_available(&self) -> bool {
        self.inner.available()
    }
}

#[async_trait]
impl NodeLink for RedisRegistry {
    fn node_name(&self) -> &str {
        &self.inner.node
    }

    async fn ask_other_nodes(&self, query: &NodeQuery) -> Result<NodeAnswers, RegistryError> {
        self.inner.ask_other_nodes(query).await
    }

    async fn set_away(&self, uid: &Uid, role: Role, session: SessionId, away: bool) {
        let inner = &self.inner;
        if !inner.available() {
            return;
        }
        let mut connection = inner.connection();
        let _ = inner
            .call(
                scripts::SET_AWAY
                    .key(inner.keys.uid(uid))
                    .arg(role.as_str())
                    .arg(inner.holder(session))
                    .arg(u8::from(away))
                    .invoke_async::<i64>(&mut connection),
            )
            .await;
    }

    fn resume_token_tag(&self) -> &str {
        &self.inner.token_tag
    }

    fn set_exporter(&self, exporter: std::sync::Weak<dyn SessionExporter>) {
        let _ = self.inner.exporter.set(exporter);
    }

    async fn take_session(
        &self,
        token: &str,
        last_seq: u64,
        identity: Option<&Identity>,
    ) -> Result<Option<SessionExport>, Rejection> {
        let inner = &self.inner;
        let Some(node) = token
            .split_once('.')
            .map(|(node, _)| node)
            .filter(|node| node.len() == 16 && *node != inner.node)
        else {
            return Ok(None);
        };
        let unavailable = || {
            Rejection::new(
                ErrorCode::Unavailable,
                "the node holding the session cannot be reached; retry",
            )
        };
        if !inner.available() {
            return Err(unavailable());
        }
        let take = |asker| Frame::Take {
            resume_token: token.to_owned(),
            last_seq,
            identity: identity.cloned(),
            asker,
        };
        // A session that is going away this moment is refused with
        // UNAVAILABLE until it has told its peer: ask again, for a while.
        let mut turns = 0;
        let answer = loop {
            match inner.ask(node, take).await {
                Ok(Answer::Refused(rejection))
                    if rejection.code == ErrorCode::Unavailable && turns < ANNOUNCE_WAIT_TURNS =>
                {
                    turns += 1;
                    tokio::time::sleep(ANNOUNCE_WAIT_TURN).await;
                }
                other => break other,
            }
        };
        let answer = match answer {
            Ok(reply) => reply,
            // Nobody holds that node's channel: the node is gone, and its
            // sessions with it.
            Err(Unanswered::NobodyListens) => {
                return Err(Rejection::new(
                    ErrorCode::ResumeFailed,
                    "the node that held the session is gone",
                ));
            }
            Err(Unanswered::NoAnswer) => return Err(unavailable()),
        };
        match answer {
            Answer::Exported(wire) => bus::decode_export(&wire)
                .map(Some)
                .map_err(|e| Rejection::new(ErrorCode::Internal, e.to_string())),
            Answer::Refused(rejection) => Err(rejection),
            Answer::Delivered(_) | Answer::Queried(_) => Err(Rejection::new(
                ErrorCode::ResumeFailed,
                "the node answered the hand-over as something else",
            )),
        }
    }

    async fn adopt(
        &self,
        uid: &Uid,
        role: Role,
        token: &str,
        session: &Arc<SessionHandle>,
    ) -> Result<bool, RegistryError> {
        let inner = &self.inner;
        let Some((from, _)) = token.split_once('.') else {
            return Ok(false);
        };
        // The session keeps its id on its new node.
        let binding = member(uid, role, session.id());
        let _in_flight = inner.binding_in_flight(session);
        inner.index_binding(&binding).await?;
        let mut connection = inner.connection();
        let (moved, epoch): (i64, u64) = inner
            .call(
                scripts::MIGRATE
                    .key(inner.keys.uid(uid))
                    .arg(role.as_str())
                    .arg(format!("{from}/{}", session.id()))
                    .arg(inner.holder(session.id()))
                    .invoke_async(&mut connection),
            )
            .await?;
        if moved == 0 {
            inner.unindex_binding(&inner.node, &binding).await;
        } else {
            inner.unindex_binding(from, &binding).await;
        }
        let local = (moved != 0).then(|| inner.local.bind(uid, role, session, epoch));
        // The old node holds frames for the session until it hears this.
        let notice = Frame::Adopted {
            session: session.id(),
            bound: moved != 0,
        };
        let _ = inner.publish(from, notice).await;
        let Some(local) = local else {
            return Ok(false);
        };
        if let Some(replaced) = local.replaced {
            replaced.kill(ErrorCode::Replaced);
        }
        Ok(true)
    }

    async fn leave(&self) {
        let inner = &self.inner;
        inner.stop.cancel();
        // Whatever this node still holds is reaped by the others at once.
        let mut connection = inner.connection();
        let _ = inner
            .call(
                redis::cmd("DEL")
                    .arg(inner.keys.alive(&inner.node))
                    .query_async::<i64>(&mut connection),
            )
            .await;
        info!(node = %inner.node, "left the cluster");
    }
}

//! The pairing registry: which session holds each (uid, role).
//!
//! [`Registry`] is the interface the hub talks to; [`InMemoryRegistry`] is
//! the embedded default. A multi-node implementation (Redis) implements the
//! same trait: its operations are few and coarse so that each one can be
//! made atomic across nodes.

use std::fmt;
use std::future::Ready;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use futures_util::future::{BoxFuture, Either};

use super::admin::{NodeAnswers, NodeQuery};
use super::call_report::CallReport;
use super::command::{Role, Uid, UidMap};
use super::error::{ErrorCode, Rejection};
use super::event::Event;
use super::handover::{SessionExport, SessionExporter};
use super::identity::Identity;
use super::ids::DoorKind;
use super::session::{DeliveryError, SessionHandle, SessionId};
use crate::sync::lock;

/// A session held by another node, reached through whatever links the
/// nodes (the Redis registry's bus). Implemented outside the core.
#[async_trait]
pub trait RemoteSession: Send + Sync + fmt::Debug {
    /// The session's id.
    fn id(&self) -> SessionId;

    /// Whether the session was away (dropped, waiting for a resume) when
    /// the registry looked it up.
    fn is_away(&self) -> bool {
        false
    }

    /// Hands an event to the session's node. For a relay it returns only
    /// once that node has queued it (or refused it), so a sender learns
    /// about a slow or vanished peer exactly as it would on one node.
    async fn deliver(&self, event: Event) -> Result<(), DeliveryError>;

    /// Hands the session's node a `callreport` from this session's peer,
    /// made on `door`, to join there (docs/PROTOCOL.md, *Call outcomes*:
    /// a call is joined where its web session lives). Returns once Redis
    /// has taken it; `Unreachable` if it did not.
    async fn join_call(&self, door: DoorKind, report: CallReport) -> Result<(), DeliveryError>;
}

/// What [`Peer::offer`] returns: a local peer's answer, ready at once, or
/// the remote call's boxed future.
pub type Offer<'a> =
    Either<Ready<Result<(), DeliveryError>>, BoxFuture<'a, Result<(), DeliveryError>>>;

/// A session a registry operation pointed at: the peer to notify or relay to.
#[derive(Clone, Debug)]
pub struct Peer(PeerKind);

#[derive(Clone, Debug)]
enum PeerKind {
    Local(Arc<SessionHandle>),
    Remote(Arc<dyn RemoteSession>),
}

impl Peer {
    /// A peer living in this process.
    pub fn local(handle: Arc<SessionHandle>) -> Peer {
        Peer(PeerKind::Local(handle))
    }

    /// A peer on another node.
    pub fn remote(session: Arc<dyn RemoteSession>) -> Peer {
        Peer(PeerKind::Remote(session))
    }

    /// The peer's session id.
    pub fn id(&self) -> SessionId {
        match &self.0 {
            PeerKind::Local(handle) => handle.id(),
            PeerKind::Remote(session) => session.id(),
        }
    }

    /// Hands the peer an event: a local peer's outbox takes it at once; a
    /// remote one's node is asked to.
    pub async fn deliver(&self, event: Event) -> Result<(), DeliveryError> {
        match &self.0 {
            PeerKind::Local(handle) => handle.deliver(event),
            PeerKind::Remote(session) => session.deliver(event).await,
        }
    }

    /// Hands the peer a relayed event; a local peer that cannot take it is
    /// left for the caller to close with [`Peer::close_slow`] (a remote
    /// one's node closes it itself).
    ///
    /// Not an `async fn`: a local peer takes the event at once, and the
    /// future (part of every connection task's largest state, a relay) holds
    /// no copy of the event, only the remote call's boxed future.
    pub fn offer(&self, event: Event) -> Offer<'_> {
        match &self.0 {
            PeerKind::Local(handle) => Either::Left(std::future::ready(handle.offer(event))),
            PeerKind::Remote(session) => Either::Right(session.deliver(event)),
        }
    }

    /// Sends a `callreport` this peer's partner made on `door` to the
    /// peer's node, to be joined there: `None` for a local peer (join it
    /// here).
    pub fn forward_call(
        &self,
        door: DoorKind,
        report: CallReport,
    ) -> Option<BoxFuture<'_, Result<(), DeliveryError>>> {
        match &self.0 {
            PeerKind::Local(_) => None,
            PeerKind::Remote(session) => Some(session.join_call(door, report)),
        }
    }

    /// Closes a local peer that [`Peer::offer`] found full as a slow
    /// consumer (a remote peer's node has already done so).
    pub fn close_slow(&self) {
        if let PeerKind::Local(handle) = &self.0 {
            handle.kill(ErrorCode::SlowConsumer);
        }
    }

    /// Whether the peer's connection dropped and it waits for a resume
    /// (for a remote peer: as the registry last saw it).
    pub fn is_away(&self) -> bool {
        match &self.0 {
            PeerKind::Local(handle) => handle.is_away(),
            PeerKind::Remote(session) => session.is_away(),
        }
    }
}

/// What [`Registry::bind`] did.
#[derive(Clone, Debug)]
pub struct Bound {
    /// The session holding the other role of the uid, if any.
    pub peer: Option<Peer>,
    /// The older session that held this (uid, role) and lost it; the
    /// caller tells it `REPLACED`.
    pub replaced: Option<Arc<SessionHandle>>,
    /// The older session was on another node (which closes it) and was
    /// away: the peer is told `peer_back`.
    pub replaced_remote_away: bool,
}

/// Why a relay cannot be routed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The sender no longer holds its (uid, role): it was replaced.
    #[error("this session no longer holds its uid and role")]
    NotOwner,
    /// The other role of the uid is absent.
    #[error("the peer is not connected")]
    NoPeer,
    /// The registry could not be consulted.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// A failure of the registry itself (not of the request).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The backing store cannot be reached.
    #[error("pairing registry unavailable: {0}")]
    Unavailable(String),
}

/// How much the registry holds (for leak checks and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegistryCensus {
    /// Uids with at least one role bound.
    pub uids: usize,
    /// Bound (uid, role) slots.
    pub bound_sessions: usize,
    /// Uids with both roles bound.
    pub pairs: usize,
}

impl RegistryCensus {
    /// Counts one uid whose web and app roles are bound or not.
    pub fn count_uid(&mut self, web_bound: bool, app_bound: bool) {
        let bound = usize::from(web_bound) + usize::from(app_bound);
        self.uids += 1;
        self.bound_sessions += bound;
        self.pairs += usize::from(bound == 2);
    }
}

/// The pairing registry. Every operation that touches both roles of a uid is
/// atomic; no implementation may hold a lock across an `.await`.
#[async_trait]
pub trait Registry: Send + Sync + 'static {
    /// Binds (uid, role) to `session`. An older session holding the same
    /// (uid, role) loses it and is returned, for the caller to close.
    async fn bind(
        &self,
        uid: &Uid,
        role: Role,
        session: &Arc<SessionHandle>,
    ) -> Result<Bound, RegistryError>;

    /// Frees (uid, role) if `session` still holds it, and returns the peer
    /// to tell. Never evicts a successor: a replaced session's unbind is a
    /// no-op returning `None`.
    async fn unbind(
        &self,
        uid: &Uid,
        role: Role,
        session: SessionId,
    ) -> Result<Option<Peer>, RegistryError>;

    /// The peer of `session`, which must still hold (uid, role).
    async fn peer_of(&self, uid: &Uid, role: Role, session: SessionId) -> Result<Peer, RouteError>;

    /// [`Registry::peer_of`] without waiting, when the registry can answer
    /// from this process's memory (the relay path asks this first: an
    /// `async` trait call costs an allocation). `None`: ask `peer_of`.
    fn peer_of_now(
        &self,
        uid: &Uid,
        role: Role,
        session: SessionId,
    ) -> Option<Result<Peer, RouteError>> {
        let _ = (uid, role, session);
        None
    }

    /// Current size of the registry.
    fn census(&self) -> RegistryCensus;

    /// Whether the registry can serve registrations right now (a shared
    /// registry whose store is unreachable cannot). `/readyz` reports it.
    fn is_available(&self) -> bool {
        true
    }

    /// Visits every session this node holds a binding for.
    fn each_local_session(&self, visit: &mut dyn FnMut(&Uid, Role, &Arc<SessionHandle>));

    /// The session this node holds for (uid, role), if any.
    fn local_session(&self, uid: &Uid, role: Role) -> Option<Arc<SessionHandle>>;
}

/// What a registry shared by several nodes adds to [`Registry`]: this
/// node's place among the others. The hub holds one only when the
/// registry is shared (`None`: one node, nothing to ask or tell).
#[async_trait]
pub trait NodeLink: Send + Sync + 'static {
    /// This node's name.
    fn node_name(&self) -> &str;

    /// What resume tokens issued on this node start with, so that another
    /// node knows whom to ask.
    fn resume_token_tag(&self) -> &str;

    /// Gives the link the hub's exporter, to answer other nodes' requests
    /// for this node's sessions.
    fn set_exporter(&self, exporter: std::sync::Weak<dyn SessionExporter>);

    /// Records that the session holding (uid, role) went away (`true`) or
    /// came back (`false`), for peers on other nodes to see.
    async fn set_away(&self, uid: &Uid, role: Role, session: SessionId, away: bool);

    /// Asks the node that issued `token` for its session. `Ok(None)`: the
    /// token is not another node's (unknown here).
    async fn take_session(
        &self,
        token: &str,
        last_seq: u64,
        identity: Option<&Identity>,
    ) -> Result<Option<SessionExport>, Rejection>;

    /// Moves the binding of (uid, role) from the node that issued `token`
    /// (where `session` was held) to `session` here, unless a newer
    /// registration took it meanwhile (`Ok(false)`).
    async fn adopt(
        &self,
        uid: &Uid,
        role: Role,
        token: &str,
        session: &Arc<SessionHandle>,
    ) -> Result<bool, RegistryError>;

    /// Asks every other live node the admin API's `query` (each answers
    /// with [`SessionExporter::answer`]); a node that does not answer in
    /// time is listed with `None`.
    async fn ask_other_nodes(&self, query: &NodeQuery) -> Result<NodeAnswers, RegistryError>;

    /// Called once when the gateway has closed its sessions: stops the
    /// link's background work and leaves the cluster.
    async fn leave(&self);
}

/// Maps keyed by uid, spread over mutex-guarded shards (16) by the uid's
/// digest, so that sessions of different uids rarely wait for each other.
///
/// A blocking mutex is right here: every critical section is a few map
/// operations and never awaits, so an async mutex would only add cost.
pub(crate) struct UidShards<V> {
    shards: Box<[Mutex<UidMap<V>>]>,
}

impl<V> Default for UidShards<V> {
    fn default() -> Self {
        const SHARDS: usize = 16;
        UidShards {
            shards: (0..SHARDS).map(|_| Mutex::new(UidMap::default())).collect(),
        }
    }
}

impl<V> UidShards<V> {
    /// The shard holding `uid`, locked.
    pub(crate) fn shard(&self, uid: &Uid) -> MutexGuard<'_, UidMap<V>> {
        // A poisoned shard only means another thread panicked mid-operation;
        // the map itself is still consistent (each operation is a few inserts
        // and removes), so keep serving.
        lock(&self.shards[uid.shard_index(self.shards.len())])
    }

    /// Every shard, locked one at a time.
    pub(crate) fn each(&self) -> impl Iterator<Item = MutexGuard<'_, UidMap<V>>> {
        self.shards.iter().map(|shard| lock(shard))
    }
}

/// Both roles of one uid.
#[derive(Default)]
struct Pair {
    web: Option<Arc<SessionHandle>>,
    app: Option<Arc<SessionHandle>>,
}

impl Pair {
    fn slot(&mut self, role: Role) -> &mut Option<Arc<SessionHandle>> {
        match role {
            Role::Web => &mut self.web,
            Role::App => &mut self.app,
        }
    }

    fn holds(&mut self, role: Role, session: SessionId) -> bool {
        self.slot(role).as_ref().map(|h| h.id()) == Some(session)
    }

    fn is_empty(&self) -> bool {
        self.web.is_none() && self.app.is_none()
    }
}

/// The embedded registry: sharded maps behind `std::sync::Mutex`es.
#[derive(Default)]
pub struct InMemoryRegistry {
    shards: UidShards<Pair>,
}

impl InMemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn local_peer_of(&self, uid: &Uid, role: Role, session: SessionId) -> Result<Peer, RouteError> {
        let mut shard = self.shard(uid);
        let pair = shard.get_mut(uid).ok_or(RouteError::NotOwner)?;
        if !pair.holds(role, session) {
            return Err(RouteError::NotOwner);
        }
        pair.slot(role.peer())
            .clone()
            .map(Peer::local)
            .ok_or(RouteError::NoPeer)
    }

    fn shard(&self, uid: &Uid) -> MutexGuard<'_, UidMap<Pair>> {
        self.shards.shard(uid)
    }
}

#[async_trait]
impl Registry for InMemoryRegistry {
    async fn bind(
        &self,
        uid: &Uid,
        role: Role,
        session: &Arc<SessionHandle>,
    ) -> Result<Bound, RegistryError> {
        let (previous, peer) = {
            let mut shard = self.shard(uid);
            let pair = shard.entry(uid.clone()).or_default();
            let previous = pair.slot(role).replace(Arc::clone(session));
            (previous, pair.slot(role.peer()).clone())
        };
        let replaced = previous.filter(|old| old.id() != session.id());
        Ok(Bound {
            peer: peer.map(Peer::local),
            replaced,
            replaced_remote_away: false,
        })
    }

    async fn unbind(
        &self,
        uid: &Uid,
        role: Role,
        session: SessionId,
    ) -> Result<Option<Peer>, RegistryError> {
        let mut shard = self.shard(uid);
        let Some(pair) = shard.get_mut(uid) else {
            return Ok(None);
        };
        if !pair.holds(role, session) {
            return Ok(None);
        }
        *pair.slot(role) = None;
        let peer = pair.slot(role.peer()).clone();
        if pair.is_empty() {
            shard.remove(uid);
        }
        Ok(peer.map(Peer::local))
    }

    async fn peer_of(&self, uid: &Uid, role: Role, session: SessionId) -> Result<Peer, RouteError> {
        self.local_peer_of(uid, role, session)
    }

    fn peer_of_now(
        &self,
        uid: &Uid,
        role: Role,
        session: SessionId,
    ) -> Option<Result<Peer, RouteError>> {
        Some(self.local_peer_of(uid, role, session))
    }

    fn local_session(&self, uid: &Uid, role: Role) -> Option<Arc<SessionHandle>> {
        self.shard(uid).get_mut(uid)?.slot(role).clone()
    }

    fn each_local_session(&self, visit: &mut dyn FnMut(&Uid, Role, &Arc<SessionHandle>)) {
        for shard in self.shards.each() {
            for (uid, pair) in shard.iter() {
                for (role, slot) in [(Role::Web, &pair.web), (Role::App, &pair.app)] {
                    if let Some(handle) = slot {
                        visit(uid, role, handle);
                    }
                }
            }
        }
    }

    fn census(&self) -> RegistryCensus {
        let mut census = RegistryCensus::default();
        for shard in self.shards.each() {
            for pair in shard.values() {
                census.count_uid(pair.web.is_some(), pair.app.is_some());
            }
        }
        census
    }
}

//! This node's own sessions, by (uid, role): the part of the pairing state
//! the node serves without asking Redis (pairs whose two sessions are both
//! here keep relaying through a Redis outage).
//!
//! Each slot carries the epoch Redis gave its binding, so that two
//! registrations of the same (uid, role) on this node that finish out of
//! order still leave the one Redis chose last.

use std::sync::{Arc, MutexGuard};

use crate::core::registry::UidShards;
use crate::core::{RegistryCensus, Role, SessionHandle, SessionId, Uid, UidMap};

#[derive(Clone)]
struct Slot {
    epoch: u64,
    handle: Arc<SessionHandle>,
    /// Where this session's peer on another node was last found (node,
    /// session): relays go there without asking Redis until it fails.
    route: Option<(String, SessionId)>,
}

#[derive(Default)]
struct Pair {
    web: Option<Slot>,
    app: Option<Slot>,
}

impl Pair {
    fn slot(&mut self, role: Role) -> &mut Option<Slot> {
        match role {
            Role::Web => &mut self.web,
            Role::App => &mut self.app,
        }
    }

    fn holds(&mut self, role: Role, session: SessionId) -> bool {
        self.slot(role).as_ref().map(|s| s.handle.id()) == Some(session)
    }

    fn is_empty(&self) -> bool {
        self.web.is_none() && self.app.is_none()
    }
}

/// What [`LocalTable::bind`] did.
pub(crate) struct LocalBound {
    /// The session that lost the slot: an older one, or the one being bound
    /// if a later registration already took the slot.
    pub replaced: Option<Arc<SessionHandle>>,
    /// The other role's session, if it is on this node.
    pub peer: Option<Arc<SessionHandle>>,
}

/// Sharded (uid → both roles) map of this node's sessions.
pub(crate) struct LocalTable {
    shards: UidShards<Pair>,
}

impl LocalTable {
    pub(crate) fn new() -> LocalTable {
        LocalTable {
            shards: UidShards::default(),
        }
    }

    fn shard(&self, uid: &Uid) -> MutexGuard<'_, UidMap<Pair>> {
        self.shards.shard(uid)
    }

    /// Puts `handle` in (uid, role) unless a binding with a later epoch is
    /// already there.
    pub(crate) fn bind(
        &self,
        uid: &Uid,
        role: Role,
        handle: &Arc<SessionHandle>,
        epoch: u64,
    ) -> LocalBound {
        let mut shard = self.shard(uid);
        let pair = shard.entry(uid.clone()).or_default();
        let replaced = match pair.slot(role) {
            Some(current) if current.epoch > epoch => Some(Arc::clone(handle)),
            slot => slot
                .replace(Slot {
                    epoch,
                    handle: Arc::clone(handle),
                    route: None,
                })
                .map(|old| old.handle)
                .filter(|old| old.id() != handle.id()),
        };
        let peer = pair
            .slot(role.peer())
            .as_ref()
            .map(|s| Arc::clone(&s.handle));
        LocalBound { replaced, peer }
    }

    /// Visits every session bound here.
    pub(crate) fn each(&self, visit: &mut dyn FnMut(&Uid, Role, &Arc<SessionHandle>)) {
        for shard in self.shards.each() {
            for (uid, pair) in shard.iter() {
                for (role, slot) in [(Role::Web, &pair.web), (Role::App, &pair.app)] {
                    if let Some(slot) = slot {
                        visit(uid, role, &slot.handle);
                    }
                }
            }
        }
    }

    /// Frees (uid, role) if `session` holds it; the local peer, if any.
    /// `None` when `session` did not hold it.
    pub(crate) fn unbind(
        &self,
        uid: &Uid,
        role: Role,
        session: SessionId,
    ) -> Option<Option<Arc<SessionHandle>>> {
        let mut shard = self.shard(uid);
        let pair = shard.get_mut(uid)?;
        if !pair.holds(role, session) {
            return None;
        }
        *pair.slot(role) = None;
        let peer = pair
            .slot(role.peer())
            .as_ref()
            .map(|s| Arc::clone(&s.handle));
        if pair.is_empty() {
            shard.remove(uid);
        }
        Some(peer)
    }

    /// The session holding (uid, role) here, if it is `session` (or any
    /// session when `session` is `None`).
    pub(crate) fn get(
        &self,
        uid: &Uid,
        role: Role,
        session: Option<SessionId>,
    ) -> Option<Arc<SessionHandle>> {
        let mut shard = self.shard(uid);
        let slot = shard.get_mut(uid)?.slot(role).as_ref()?;
        session
            .is_none_or(|id| slot.handle.id() == id)
            .then(|| Arc::clone(&slot.handle))
    }

    /// For a relay from `session`: `Err(())` if it no longer holds (uid,
    /// role) here, else the peer if the peer is on this node.
    pub(crate) fn local_peer(
        &self,
        uid: &Uid,
        role: Role,
        session: SessionId,
    ) -> Result<Option<Arc<SessionHandle>>, ()> {
        let mut shard = self.shard(uid);
        let pair = shard.get_mut(uid).ok_or(())?;
        if !pair.holds(role, session) {
            return Err(());
        }
        Ok(pair
            .slot(role.peer())
            .as_ref()
            .map(|s| Arc::clone(&s.handle)))
    }

    /// The cached route to the remote peer of `session`, if it still holds
    /// (uid, role) here.
    pub(crate) fn route(
        &self,
        uid: &Uid,
        role: Role,
        session: SessionId,
    ) -> Option<(String, SessionId)> {
        let mut shard = self.shard(uid);
        let slot = shard.get_mut(uid)?.slot(role).as_ref()?;
        (slot.handle.id() == session)
            .then(|| slot.route.clone())
            .flatten()
    }

    /// Caches (or forgets) the route to the remote peer of `session`.
    pub(crate) fn set_route(
        &self,
        uid: &Uid,
        role: Role,
        session: SessionId,
        route: Option<(String, SessionId)>,
    ) {
        let mut shard = self.shard(uid);
        if let Some(Some(slot)) = shard.get_mut(uid).map(|pair| pair.slot(role))
            && slot.handle.id() == session
        {
            slot.route = route;
        }
    }

    /// Every binding held here, with its epoch.
    pub(crate) fn snapshot(&self) -> Vec<(Uid, Role, Arc<SessionHandle>, u64)> {
        let mut all = Vec::new();
        for shard in self.shards.each() {
            for (uid, pair) in shard.iter() {
                for (role, slot) in [(Role::Web, &pair.web), (Role::App, &pair.app)] {
                    if let Some(slot) = slot {
                        all.push((uid.clone(), role, Arc::clone(&slot.handle), slot.epoch));
                    }
                }
            }
        }
        all
    }

    pub(crate) fn census(&self) -> RegistryCensus {
        let mut census = RegistryCensus::default();
        for shard in self.shards.each() {
            for pair in shard.values() {
                census.count_uid(pair.web.is_some(), pair.app.is_some());
            }
        }
        census
    }
}

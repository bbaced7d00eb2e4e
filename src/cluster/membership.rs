//! Membership: this node's heartbeat, the reaping of nodes whose heartbeat
//! expired, and putting this node's state back into Redis after an outage.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::{debug, info};

use super::keys::{member, parse_member, split_holder};
use super::{Inner, REAP_BATCH, RECONNECT_BACKOFF, lock};
use crate::core::{ErrorCode, Event, RegistryError, Role, SessionId, Uid};

impl Inner {
    /// `SET alive PX ttl GET` and membership in the nodes set. Returns
    /// whether the heartbeat key was still there.
    pub(super) async fn beat(&self) -> Result<bool, RegistryError> {
        let mut connection = self.connection();
        let ttl_ms = self.node_ttl.as_millis() as u64;
        // Two commands, not a pipeline: the keys may live on two shards.
        let previous: Option<String> = self
            .call(
                redis::cmd("SET")
                    .arg(self.keys.alive(&self.node))
                    .arg(1)
                    .arg("PX")
                    .arg(ttl_ms)
                    .arg("GET")
                    .query_async(&mut connection),
            )
            .await?;
        self.call(
            redis::cmd("SADD")
                .arg(self.keys.nodes())
                .arg(&self.node)
                .query_async::<i64>(&mut connection),
        )
        .await?;
        Ok(previous.is_some())
    }

    /// Renews the heartbeat every third of the TTL and reaps dead nodes.
    pub(super) async fn heartbeat(self: Arc<Self>) {
        let interval = self.node_ttl / 3;
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = self.beat_now.notified() => {}
                () = self.stop.cancelled() => return,
            }
            // A shard that failed since the last beat may have lost writes
            // (a failover drops what its replica had not copied yet).
            let shard_trouble = self.shard_trouble.swap(false, Ordering::AcqRel);
            let was_ok = self.heartbeat_ok.load(Ordering::Acquire) && !shard_trouble;
            match self.beat().await {
                Ok(key_was_there) => {
                    if !was_ok || !key_was_there {
                        // Writes may have been lost while Redis was away, or
                        // Redis restarted empty: put this node's state back.
                        self.reassert.notify_one();
                    }
                    if self.subscribed.load(Ordering::Acquire)
                        && !self.heartbeat_ok.swap(true, Ordering::AcqRel)
                    {
                        info!(node = %self.node, "Redis reachable again");
                    } else if shard_trouble {
                        info!(node = %self.node, "Redis Cluster commands succeed again");
                    }
                    self.expire_moved();
                    if let Err(error) = self.reap_dead_nodes().await {
                        debug!(%error, "reaping dead nodes failed");
                    }
                }
                Err(error) => debug!(%error, "heartbeat failed"),
            }
        }
    }

    /// Frees the bindings of every node whose heartbeat expired and tells
    /// their peers `byebye` (the script publishes it).
    pub(super) async fn reap_dead_nodes(&self) -> Result<(), RegistryError> {
        let mut connection = self.connection();
        let nodes: Vec<String> = self
            .call(
                redis::cmd("SMEMBERS")
                    .arg(self.keys.nodes())
                    .query_async(&mut connection),
            )
            .await?;
        for node in nodes.iter().filter(|node| **node != self.node) {
            if self.reap(node).await? {
                info!(dead_node = %node, "reaped a node whose heartbeat expired");
            }
        }
        Ok(())
    }

    /// Frees `node`'s bindings, a batch at a time, while its heartbeat
    /// stays expired; forgets the node once its sessions set is empty.
    /// Returns whether the node was reaped (false: it is alive).
    async fn reap(&self, node: &str) -> Result<bool, RegistryError> {
        let mut connection = self.connection();
        loop {
            let alive: bool = self
                .call(
                    redis::cmd("EXISTS")
                        .arg(self.keys.alive(node))
                        .query_async(&mut connection),
                )
                .await?;
            if alive {
                return Ok(false);
            }
            let batch: Vec<String> = self
                .call(
                    redis::cmd("SRANDMEMBER")
                        .arg(self.keys.sessions(node))
                        .arg(REAP_BATCH)
                        .query_async(&mut connection),
                )
                .await?;
            if batch.is_empty() {
                self.call(
                    redis::cmd("SREM")
                        .arg(self.keys.nodes())
                        .arg(node)
                        .query_async::<i64>(&mut connection),
                )
                .await?;
                return Ok(true);
            }
            let mut freed = Vec::new();
            for binding in &batch {
                let Some((role, session, uid)) = parse_member(binding) else {
                    continue;
                };
                let holder = format!("{node}/{session}");
                if let Some(peer) = self.release(&uid, role, &holder, true).await? {
                    let peer_session = split_holder(&peer).map(|(_, session)| session);
                    freed.push((uid, role, session, peer_session));
                }
            }
            self.call(
                redis::cmd("SREM")
                    .arg(self.keys.sessions(node))
                    .arg(&batch)
                    .query_async::<i64>(&mut connection),
            )
            .await?;
            self.reaped(&freed);
        }
    }

    /// Hands the sessions a reap freed (uid, role, session, peer session)
    /// to the hub: this node, the one that reaped them, reports their end.
    fn reaped(&self, freed: &[(Uid, Role, SessionId, Option<SessionId>)]) {
        let Some(exporter) = self.exporter.get().and_then(std::sync::Weak::upgrade) else {
            return;
        };
        for (uid, role, session, peer) in freed {
            exporter.reaped(uid, *role, *session, *peer);
        }
    }

    /// Runs [`Inner::reassert_bindings`] whenever asked, until it succeeds.
    pub(super) async fn reasserter(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = self.reassert.notified() => {}
                () = self.stop.cancelled() => return,
            }
            while let Err(error) = self.reassert_bindings().await {
                debug!(%error, "re-asserting bindings failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(RECONNECT_BACKOFF) => {}
                    () = self.stop.cancelled() => return,
                }
            }
            if lock(&self.pending_releases).is_empty() {
                continue;
            }
            // Give the other nodes a heartbeat to re-assert their own
            // bindings (Redis may have come back empty), so that the peers
            // of sessions that ended meanwhile can be found and told.
            tokio::select! {
                () = tokio::time::sleep(self.node_ttl / 2) => {}
                () = self.stop.cancelled() => return,
            }
            if let Err(error) = self.release_pending().await {
                debug!(%error, "releasing bindings of ended sessions failed");
                self.reassert.notify_one();
            }
        }
    }

    /// Frees the entries of sessions that ended while Redis was
    /// unreachable and tells their peers `byebye`.
    pub(super) async fn release_pending(self: &Arc<Self>) -> Result<(), RegistryError> {
        let pending = std::mem::take(&mut *lock(&self.pending_releases));
        for (index, (uid, role, session)) in pending.iter().enumerate() {
            let peer = match self.unbind_in_redis(uid, *role, *session).await {
                // Freed, or not there at all (Redis came back empty): the
                // other role, if anyone holds it, has lost its peer.
                Ok((1 | 2, peer)) => peer,
                Ok(_) => continue,
                Err(error) => {
                    lock(&self.pending_releases).extend(pending[index..].iter().cloned());
                    return Err(error);
                }
            };
            // A peer on this node was told when the session ended.
            let remote = split_holder(&peer).is_some_and(|(node, _)| node != self.node);
            if remote && let Some(peer) = self.peer_from(&peer, uid, role.peer()) {
                let _ = peer.deliver(Event::ByeBye).await;
            }
        }
        info!(node = %self.node, released = pending.len(), "freed the bindings of sessions that ended while Redis was unreachable");
        Ok(())
    }

    /// Makes Redis agree with this node again: every local binding is
    /// re-asserted (or, if another session took it meanwhile, closed as
    /// `REPLACED`), and every entry of this node's set that no local
    /// session holds any more is freed, its peer told `byebye`.
    pub(super) async fn reassert_bindings(self: &Arc<Self>) -> Result<(), RegistryError> {
        let mut connection = self.connection();
        let held = self.local.snapshot();
        let mut replaced = 0usize;
        for (uid, role, handle, epoch) in &held {
            let me = self.holder(handle.id());
            self.index_binding(&member(uid, *role, handle.id())).await?;
            if let Err(other) = self.rebind(uid, *role, &me, *epoch).await? {
                debug!(%uid, %role, holder = %other, "lost a binding while Redis was unreachable");
                self.local.unbind(uid, *role, handle.id());
                handle.kill(ErrorCode::Replaced);
                replaced += 1;
            }
        }
        let members: Vec<String> = self
            .call(
                redis::cmd("SMEMBERS")
                    .arg(self.keys.sessions(&self.node))
                    .query_async(&mut connection),
            )
            .await?;
        let mut released = 0usize;
        for binding in members {
            let Some((role, session, uid)) = parse_member(&binding) else {
                continue;
            };
            // Held here, being bound, or handed to another node (which
            // moves the binding): not stale.
            if self.local.get(&uid, role, Some(session)).is_some()
                || self.is_binding(session)
                || lock(&self.moved).contains_key(&session)
            {
                continue;
            }
            let freed = self
                .release(&uid, role, &self.holder(session), false)
                .await?;
            self.unindex_binding(&self.node, &binding).await;
            let Some(peer) = freed else {
                continue;
            };
            released += 1;
            if let Some(peer) = self.peer_from(&peer, &uid, role.peer()) {
                let _ = peer.deliver(Event::ByeBye).await;
            }
        }
        info!(node = %self.node, held = held.len(), replaced, released, "re-asserted this node's bindings in Redis");
        Ok(())
    }
}

//! Membership: this node's heartbeat, the reaping of nodes whose heartbeat
//! expired, and putting this node's state back into Redis after an outage.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::{debug, info};

use super::keys::{member, parse_role, split_holder};
use super::{Inner, REAP_BATCH, RECONNECT_BACKOFF, lock, scripts};
use crate::core::{ErrorCode, Event, RegistryError, SessionId, Uid};

impl Inner {
    /// `SET alive PX ttl GET` and membership in the nodes set. Returns
    /// whether the heartbeat key was still there.
    pub(super) async fn beat(&self) -> Result<bool, RegistryError> {
        let mut connection = self.connection();
        let ttl_ms = self.node_ttl.as_millis() as u64;
        let (previous, _): (Option<String>, i64) = self
            .call(
                redis::pipe()
                    .cmd("SET")
                    .arg(self.keys.alive(&self.node))
                    .arg(1)
                    .arg("PX")
                    .arg(ttl_ms)
                    .arg("GET")
                    .cmd("SADD")
                    .arg(self.keys.nodes())
                    .arg(&self.node)
                    .query_async(&mut connection),
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
            let was_ok = self.heartbeat_ok.load(Ordering::Acquire);
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
            let alive: bool = self
                .call(
                    redis::cmd("EXISTS")
                        .arg(self.keys.alive(node))
                        .query_async(&mut connection),
                )
                .await?;
            if alive {
                continue;
            }
            let mut freed_all = false;
            while !freed_all {
                let (left, freed): (i64, Vec<String>) = self
                    .call(
                        scripts::REAP
                            .key(self.keys.bindings(node))
                            .key(self.keys.alive(node))
                            .key(self.keys.nodes())
                            .arg(node)
                            .arg(&self.keys.prefix)
                            .arg(REAP_BATCH)
                            .invoke_async(&mut connection),
                    )
                    .await?;
                self.reaped(&freed);
                freed_all = left <= 0;
            }
            info!(dead_node = %node, "reaped a node whose heartbeat expired");
        }
        Ok(())
    }

    /// Hands the sessions a reap freed (role, uid, session, peer session,
    /// as the script lists them) to the hub: this node, the one that reaped
    /// them, reports their end.
    fn reaped(&self, freed: &[String]) {
        let Some(exporter) = self.exporter.get().and_then(std::sync::Weak::upgrade) else {
            return;
        };
        for binding in freed.chunks_exact(4) {
            let (Some(role), Ok(uid), Some(session)) = (
                parse_role(&binding[0]),
                Uid::new(&binding[1]),
                SessionId::parse(&binding[2]),
            ) else {
                continue;
            };
            exporter.reaped(&uid, role, session, SessionId::parse(&binding[3]));
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
            let (status, other): (i64, String) = self
                .call(
                    scripts::REBIND
                        .key(self.keys.uid(uid))
                        .key(self.keys.bindings(&self.node))
                        .arg(role.as_str())
                        .arg(role.peer().as_str())
                        .arg(&me)
                        .arg(member(uid, *role))
                        .arg(*epoch)
                        .invoke_async(&mut connection),
                )
                .await?;
            if status == 0 {
                debug!(%uid, %role, holder = %other, "lost a binding while Redis was unreachable");
                self.local.unbind(uid, *role, handle.id());
                handle.kill(ErrorCode::Replaced);
                replaced += 1;
            }
        }
        let members: Vec<String> = self
            .call(
                redis::cmd("SMEMBERS")
                    .arg(self.keys.bindings(&self.node))
                    .query_async(&mut connection),
            )
            .await?;
        let mut released = 0usize;
        for entry in members {
            let Some((role, uid)) = entry
                .split_once(':')
                .and_then(|(role, uid)| Some((parse_role(role)?, Uid::new(uid).ok()?)))
            else {
                continue;
            };
            if self.local.contains(&uid, role) {
                continue;
            }
            let peer: String = self
                .call(
                    scripts::RELEASE_STALE
                        .key(self.keys.uid(&uid))
                        .key(self.keys.bindings(&self.node))
                        .arg(role.as_str())
                        .arg(role.peer().as_str())
                        .arg(&self.node)
                        .arg(&entry)
                        .invoke_async(&mut connection),
                )
                .await?;
            released += 1;
            if let Some(peer) = self.peer_from(&peer, &uid, role.peer()) {
                let _ = peer.deliver(Event::ByeBye).await;
            }
        }
        info!(node = %self.node, held = held.len(), replaced, released, "re-asserted this node's bindings in Redis");
        Ok(())
    }
}

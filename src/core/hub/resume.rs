//! Taking a session over for a new connection: on this node (`resume`),
//! handed over by another node (`adopt`), or handed to another node
//! (the [`SessionExporter`] of the hub).

use std::sync::{Arc, Weak};

use base64::Engine as _;
use tracing::{info, warn};

use crate::core::call_report::CallReport;
use crate::core::command::{Role, Uid};
use crate::core::error::{EndReason, ErrorCode, Rejection};
use crate::core::event::Event;
use crate::core::handover::{
    ANNOUNCE_WAIT_TURN, ANNOUNCE_WAIT_TURNS, SessionExport, SessionExporter,
};
use crate::core::identity::Identity;
use crate::core::session::{Delivery, Phase, SessionHandle, SessionId, estimated_bytes};
use crate::sync::lock;
use crate::telemetry::metrics;

use super::{HookSubject, Hub, Session, Shared};
use crate::core::admin::{NodeAnswer, NodeQuery};
use crate::core::hooks::HookKind;
use crate::core::ids::DoorKind;

/// 256 random bits, URL-safe, after the registry's tag (which names the
/// node in a cluster).
pub(super) fn new_resume_token(tag: Option<&str>) -> Arc<str> {
    let bytes: [u8; 32] = rand::random();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    Arc::from(format!("{}{secret}", tag.unwrap_or("")))
}

/// The first step of every take-over, on this node or for another: the
/// session's half-open connection (if any) is closed as replaced, and it
/// leaves its away phase for `next` (its watcher woken). Whether it was
/// away.
fn take_over(theirs: &mut crate::core::session::State, next: Phase) -> bool {
    if let Some(stale) = theirs.attachment.take() {
        // Its old connection is half-open: the new one takes over.
        stale.kill(ErrorCode::Replaced);
    }
    match std::mem::replace(&mut theirs.phase, next) {
        Phase::Away { wake, .. } => {
            wake.cancel();
            true
        }
        _ => false,
    }
}

/// The retained events a client that saw up to `last_seq` missed.
fn missed_since(
    theirs: &crate::core::session::State,
    last_seq: u64,
) -> impl Iterator<Item = &Delivery> {
    theirs
        .retained
        .iter()
        .filter(move |delivery| delivery.seq.is_some_and(|seq| seq > last_seq))
}

/// Tells the peer of a session that was away that it is back.
async fn announce_back(hub: &Hub, uid: &Uid, role: Role, session: SessionId, door: DoorKind) {
    let peer = hub.shared.registry.peer_of(uid, role, session).await.ok();
    let subject = HookSubject {
        uid,
        role,
        session,
        peer: peer.as_ref().map(|peer| peer.id()),
        door: Some(door),
    };
    hub.shared.hook(HookKind::PeerBack, subject, None);
    if let Some(peer) = peer {
        let _ = peer.deliver(Event::PeerBack).await;
    }
}

/// Why a resume of this session cannot go ahead, if it cannot: the same
/// checks whether the session is on this node or handed over by another.
fn check_resumable(
    theirs: &crate::core::session::State,
    last_seq: u64,
    identity: Option<&Identity>,
) -> Result<(Uid, Role), Rejection> {
    let failed = |reason: &'static str, why: &'static str| {
        metrics::resume_failed(reason);
        Rejection::new(ErrorCode::ResumeFailed, why)
    };
    if matches!(theirs.phase, Phase::Ended) || theirs.end_reason.is_some() {
        return Err(failed("ended", "the session has ended"));
    }
    if theirs.announcing_away {
        // The asking node retries (`Registry::take_session`).
        return Err(Rejection::new(
            ErrorCode::Unavailable,
            "the session is going away this moment; retry",
        ));
    }
    let Some((uid, role)) = theirs.binding.clone() else {
        return Err(failed("not_registered", "the session was never registered"));
    };
    if let Some(identity) = identity {
        identity.permits(&uid, role)?;
    }
    if last_seq > theirs.last_seq {
        return Err(failed(
            "seq_ahead",
            "last_seq is ahead of anything the session was sent",
        ));
    }
    if last_seq < theirs.evicted_through {
        return Err(failed(
            "evicted",
            "events after last_seq are no longer retained",
        ));
    }
    Ok((uid, role))
}

impl SessionExporter for Shared {
    fn answer(&self, query: &NodeQuery) -> NodeAnswer {
        self.answer_here(query)
    }

    fn join_call(&self, uid: &Uid, door: DoorKind, report: CallReport) {
        Shared::join_call(self, uid, Role::App, door, report);
    }

    fn reaped(&self, uid: &Uid, role: Role, session: SessionId, peer: Option<SessionId>) {
        let subject = |peer| HookSubject {
            uid,
            role,
            session,
            peer,
            door: None,
        };
        let reason = Some(EndReason::NodeLost.label());
        if peer.is_some() {
            self.hook(HookKind::PairEnded, subject(peer), reason);
        }
        self.hook(HookKind::SessionEnded, subject(peer), reason);
    }

    fn export(
        &self,
        token: &str,
        last_seq: u64,
        identity: Option<&Identity>,
    ) -> Result<SessionExport, Rejection> {
        let target = lock(&self.resume_tokens)
            .get(token)
            .and_then(Weak::upgrade)
            .ok_or_else(|| {
                metrics::resume_failed("unknown_token");
                Rejection::new(
                    ErrorCode::ResumeFailed,
                    "unknown, expired, spent or replaced resume token",
                )
            })?;
        let (export, spent) = {
            let mut theirs = target.state();
            let (uid, role) = check_resumable(&theirs, last_seq, identity)?;
            // The new connection is on another node: here the session ends.
            let was_away = take_over(&mut theirs, Phase::Ended);
            let missed = missed_since(&theirs, last_seq)
                .filter_map(|delivery| Some((delivery.seq?, (*delivery.event).clone())))
                .collect();
            theirs.retained.clear();
            theirs.retained_bytes = 0;
            // The binding moves with the session: nothing here unbinds it.
            theirs.binding = None;
            let export = SessionExport {
                session_id: target.id(),
                uid,
                role,
                last_seq: theirs.last_seq,
                acknowledged: last_seq,
                missed,
                highest_request_id: theirs.highest_request_id,
                was_away,
            };
            (export, theirs.resume_token.take())
        };
        if let Some(spent) = spent {
            lock(&self.resume_tokens).remove(&spent);
        }
        if export.was_away {
            self.counts.no_longer_away();
        }
        self.counts.ended();
        metrics::disconnected("handed_over");
        info!(session = %export.session_id, uid = %export.uid, role = %export.role, missed = export.missed.len(), "handed the session to another node for a resume");
        Ok(export)
    }
}

impl Session {
    /// Moves this connection onto the session that `token` belongs to.
    pub(super) async fn resume(&mut self, token: &str, last_seq: u64) -> Result<(), Rejection> {
        let failed = |reason: &'static str, why: &'static str| {
            metrics::resume_failed(reason);
            Rejection::new(ErrorCode::ResumeFailed, why)
        };
        if self.registration().is_some() {
            return Err(Rejection::new(
                ErrorCode::AlreadyRegistered,
                "resume takes the place of register on a new connection",
            ));
        }
        let local = lock(&self.hub.shared.resume_tokens)
            .get(token)
            .and_then(Weak::upgrade);
        let Some(target) = local else {
            // Another node's token, if there are other nodes.
            let export = match &self.hub.shared.link {
                Some(link) => {
                    link.take_session(token, last_seq, self.identity.as_ref())
                        .await?
                }
                None => None,
            };
            return match export {
                Some(export) => self.adopt(export, token).await,
                None => Err(failed(
                    "unknown_token",
                    "unknown, expired, spent or replaced resume token",
                )),
            };
        };
        if Arc::ptr_eq(&target, &self.handle) {
            return Err(failed(
                "own_token",
                "a connection cannot resume its own session",
            ));
        }
        // Its peer is told `peer_away` before anything can say `peer_back`.
        for _ in 0..ANNOUNCE_WAIT_TURNS {
            if !target.state().announcing_away {
                break;
            }
            tokio::time::sleep(ANNOUNCE_WAIT_TURN).await;
        }
        let new_token = self.hub.new_resume_token();
        let (old_token, my_token, was_away, uid, role, replayed) = {
            // Two sessions at once: lock in id order so that two crossing
            // resumes cannot deadlock.
            let (mut mine, mut theirs) = if self.handle.id() < target.id() {
                let mine = self.handle.state();
                (mine, target.state())
            } else {
                let theirs = target.state();
                (self.handle.state(), theirs)
            };
            let (uid, role) = check_resumable(&theirs, last_seq, self.identity.as_ref())?;
            let Some(attachment) = mine.attachment.take() else {
                return Err(failed("closing", "this connection is closing"));
            };
            mine.phase = Phase::Ended;
            let my_token = mine.resume_token.take();
            let was_away = take_over(&mut theirs, Phase::Open);
            theirs.attachment = Some(Arc::clone(&attachment));
            theirs.since = std::time::SystemTime::now();
            let old_token = theirs.resume_token.replace(Arc::clone(&new_token));
            theirs.resumed = true;
            let missed: Vec<Delivery> = missed_since(&theirs, last_seq).cloned().collect();
            let replayed = missed.len();
            attachment.set_resume_preface(
                target.id(),
                (uid.clone(), role),
                Arc::clone(&new_token),
                missed,
                self.hub.ice_grant(&uid),
            );
            (old_token, my_token, was_away, uid, role, replayed)
        };
        {
            let mut tokens = lock(&self.hub.shared.resume_tokens);
            for spent in [old_token, my_token].into_iter().flatten() {
                tokens.remove(&spent);
            }
            tokens.insert(new_token, Arc::downgrade(&target));
        }
        if was_away {
            self.hub.shared.counts.no_longer_away();
        }
        // The connection's own provisional session is consumed.
        self.hub.shared.counts.ended();
        self.handle = target;
        self.attachment.count_as(role);
        metrics::resumed(replayed);
        let door = self.attachment.door().as_str();
        info!(session = %self.id(), %uid, %role, door, replayed, was_away, "resumed");
        if was_away && let Some(link) = &self.hub.shared.link {
            link.set_away(&uid, role, self.id(), false).await;
        }
        if was_away {
            announce_back(&self.hub, &uid, role, self.id(), self.attachment.door()).await;
        }
        Ok(())
    }
}

impl Session {
    /// Takes over, for this connection, a session that another node handed
    /// over for this resume.
    async fn adopt(&mut self, export: SessionExport, token: &str) -> Result<(), Rejection> {
        let shared = &self.hub.shared;
        let handle =
            SessionHandle::adopted(export.session_id, shared.config.resume, &shared.activity);
        let new_token = self.hub.new_resume_token();
        let (uid, role, was_away) = (export.uid.clone(), export.role, export.was_away);
        let replayed = export.missed.len();
        let (attachment, my_token) = {
            let mut mine = self.handle.state();
            mine.phase = Phase::Ended;
            (mine.attachment.take(), mine.resume_token.take())
        };
        let mut missed = Vec::with_capacity(replayed);
        {
            let mut state = handle.state();
            state.binding = Some((uid.clone(), role));
            state.last_seq = export.last_seq;
            state.evicted_through = export.acknowledged;
            state.highest_request_id = export.highest_request_id;
            state.resume_token = Some(Arc::clone(&new_token));
            for (seq, event) in export.missed {
                let delivery = Delivery {
                    seq: Some(seq),
                    event: Arc::new(event),
                    queued_at: None,
                };
                state.retained_bytes += estimated_bytes(&delivery.event);
                state.retained.push_back(delivery.clone());
                missed.push(delivery);
            }
            state.attachment = attachment.clone();
        }
        if let Some(attachment) = &attachment {
            attachment.set_resume_preface(
                handle.id(),
                (uid.clone(), role),
                Arc::clone(&new_token),
                missed,
                self.hub.ice_grant(&uid),
            );
        }
        {
            let mut tokens = lock(&shared.resume_tokens);
            if let Some(spent) = my_token {
                tokens.remove(&spent);
            }
            tokens.insert(new_token, Arc::downgrade(&handle));
        }
        // This connection's provisional session is consumed; the adopted
        // one is open here now (and no longer on the other node).
        self.handle = Arc::clone(&handle);
        // Only another node's export gets here, so there is a link.
        let adopted = match &shared.link {
            Some(link) => link.adopt(&uid, role, token, &handle).await,
            None => Ok(false),
        };
        let door = self.attachment.door().as_str();
        match adopted {
            Ok(true) => {}
            Ok(false) => {
                // A newer session registered the role meanwhile.
                handle.kill(ErrorCode::Replaced);
            }
            Err(error) => {
                warn!(session = %handle.id(), %uid, %role, %error, "a handed-over session could not be bound here");
                self.hub
                    .terminate(&handle, EndReason::Closed(ErrorCode::Unavailable), None)
                    .await;
                return Err(Rejection::new(ErrorCode::Unavailable, error.to_string()));
            }
        }
        if attachment.is_none() {
            // This connection closed while the session was on its way.
            self.hub
                .terminate(&handle, EndReason::ConnectionLost, None)
                .await;
            return Ok(());
        }
        self.attachment.count_as(role);
        metrics::resumed(replayed);
        info!(session = %handle.id(), %uid, %role, door, replayed, was_away, "resumed a session handed over by another node");
        if was_away {
            announce_back(&self.hub, &uid, role, handle.id(), self.attachment.door()).await;
        }
        Ok(())
    }
}

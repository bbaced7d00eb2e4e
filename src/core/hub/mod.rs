//! The rules: register, replace, relay, resume, disconnect. Every door
//! funnels its connections through [`Hub::open`] and [`Session`]; nothing
//! else decides what a request means.
//!
//! - this module: the [`Hub`] (open, detach, away, the one ending of every
//!   session);
//! - `relay`: a connection's [`Session`] and its requests (register, relay,
//!   ipaddr);
//! - `resume`: taking a session over, on this node or handed over by
//!   another.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::admin::Activity;
use super::command::Uid;
use super::error::{EndReason, ErrorCode};
use super::event::Event;
use super::handover::SessionExporter;
use super::hooks::{HookEvent, HookKind, HookSink};
use super::ice::{IceGrant, IcePolicy};
use super::kill::ShutdownSignal;
use super::limits::{RateLimit, TokenBucket};
use super::registry::{NodeLink, Registry, RegistryCensus};
use super::session::{
    Attachment, DoorKind, Opening, Phase, ResumeLimits, SessionHandle, SessionLink,
};
use crate::sync::lock;
use crate::telemetry::metrics;

mod admin;
mod calls;
mod counts;
mod drain;
mod relay;
mod resume;
#[cfg(test)]
mod tests;

use counts::SessionCounts;

pub use admin::{ClusterStats, Presence, SessionPage};
pub use relay::Session;

/// Where the answer to `ipaddr` comes from.
pub type AddressSource = Arc<dyn Fn() -> Arc<[Ipv4Addr]> + Send + Sync>;

/// Settings the rules need.
#[derive(Clone)]
pub struct HubConfig {
    /// Capacity of each connection's outbox, in events.
    pub outbox_capacity: usize,
    /// Capacity of each connection's outbox, in estimated bytes (one event
    /// always fits).
    pub outbox_max_bytes: usize,
    /// Produces the addresses sent in answer to `ipaddr`.
    pub addresses: AddressSource,
    /// Session resumption: window and retention bounds.
    pub resume: ResumeLimits,
    /// Per-session request rate limit.
    pub rate_limit: RateLimit,
    /// How long a connection may stay without registering or resuming
    /// (zero: forever).
    pub register_timeout: Duration,
    /// Longest uid accepted at `register`, in bytes.
    pub max_uid_bytes: usize,
    /// How long one side's call report waits for the other's.
    pub call_join_window: Duration,
    /// The ICE servers handed to sessions (`None`: none configured).
    pub ice: Option<Arc<IcePolicy>>,
    /// Where session and pair events go (`None`: no webhooks).
    pub hooks: Option<Arc<dyn HookSink>>,
}

impl fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubConfig")
            .field("outbox_capacity", &self.outbox_capacity)
            .field("outbox_max_bytes", &self.outbox_max_bytes)
            .field("resume", &self.resume)
            .finish_non_exhaustive()
    }
}

/// How many sessions are live and what the registry holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Sessions not yet ended (attached or away).
    pub open_sessions: usize,
    /// Sessions whose connection dropped, waiting for a resume.
    pub away_sessions: usize,
    /// The registry's view.
    pub registry: RegistryCensus,
}

impl Census {
    /// True when nothing is held: no session, no uid.
    pub fn is_empty(&self) -> bool {
        self.open_sessions == 0 && self.registry == RegistryCensus::default()
    }
}

struct Shared {
    registry: Arc<dyn Registry>,
    /// This node among the others, when the registry is shared.
    link: Option<Arc<dyn NodeLink>>,
    config: HubConfig,
    shutdown: ShutdownSignal,
    counts: SessionCounts,
    /// Resume token → session. Tokens are secrets: never logged.
    resume_tokens: Mutex<HashMap<Arc<str>, Weak<SessionHandle>>>,
    /// Relays and errors, for the admin API's stats.
    activity: Arc<Activity>,
    /// This node's name (the shared registry's, or `local`).
    node: Arc<str>,
    /// Set once the node drains (a rolling restart): not ready, no new
    /// sessions, its sessions told to resume elsewhere.
    draining: std::sync::atomic::AtomicBool,
    /// Cancelled when someone asks the gateway to stop (the admin API's
    /// drain); the serve loop then drains and exits as on SIGTERM.
    stop_requested: CancellationToken,
    /// Call reports waiting for the other side's (`callreport`).
    calls: Mutex<calls::CallBook>,
    /// The calls decided lately, for the admin API.
    call_history: Mutex<calls::CallHistory>,
}

/// The entry point of the core: a cheap, cloneable handle shared by every door.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// What a hook event is about: the session, its (uid, role), its peer
/// and door.
pub(super) struct HookSubject<'a> {
    pub(super) uid: &'a Uid,
    pub(super) role: super::command::Role,
    pub(super) session: super::session::SessionId,
    pub(super) peer: Option<super::session::SessionId>,
    pub(super) door: Option<DoorKind>,
}

impl Shared {
    /// Hands a hook event to the sink, if webhooks are on.
    pub(super) fn hook(
        &self,
        kind: HookKind,
        subject: HookSubject<'_>,
        reason: Option<&'static str>,
    ) {
        if let Some(hooks) = &self.config.hooks {
            hooks.emit(HookEvent {
                kind,
                uid: subject.uid.clone(),
                role: subject.role,
                session: subject.session,
                peer_session: subject.peer,
                door: subject.door,
                reason,
            });
        }
    }
}

impl Hub {
    /// A hub over `registry`, and `link` when the registry is shared with
    /// other nodes.
    pub fn new(
        registry: Arc<dyn Registry>,
        link: Option<Arc<dyn NodeLink>>,
        config: HubConfig,
    ) -> Hub {
        let node = link.as_ref().map_or("local", |link| link.node_name());
        let node = Arc::from(node);
        let calls = calls::CallBook::new(config.call_join_window);
        let hub = Hub {
            shared: Arc::new(Shared {
                registry,
                link,
                config,
                shutdown: ShutdownSignal::default(),
                counts: SessionCounts::default(),
                resume_tokens: Mutex::new(HashMap::new()),
                activity: Arc::default(),
                node,
                draining: std::sync::atomic::AtomicBool::new(false),
                stop_requested: CancellationToken::new(),
                calls: Mutex::new(calls),
                call_history: Mutex::new(calls::CallHistory::default()),
            }),
        };
        if let Some(link) = &hub.shared.link {
            let exporter: Weak<dyn SessionExporter> = Arc::downgrade(&hub.shared) as Weak<Shared>;
            link.set_exporter(exporter);
        }
        hub
    }

    fn new_resume_token(&self) -> Arc<str> {
        resume::new_resume_token(
            self.shared
                .link
                .as_ref()
                .map(|link| link.resume_token_tag()),
        )
    }

    /// A fresh ICE server list for a session of `uid` (`None` when none are
    /// configured); minted credentials are counted.
    fn ice_grant(&self, uid: &Uid) -> Option<Arc<IceGrant>> {
        let policy = self.shared.config.ice.as_deref()?;
        let grant = policy.grant(uid, std::time::SystemTime::now());
        if grant.expire_at.is_some() {
            metrics::turn_credentials_issued();
        }
        Some(Arc::new(grant))
    }

    /// Opens a session for a new connection: the door keeps the [`Session`]
    /// to submit requests and the [`SessionLink`] to write events. `welcome`
    /// is already queued. `identity` is who the connection authenticated as
    /// (`None` when authentication is off); `remote_addr` the client's
    /// address, for the admin API's listings. While the node drains, the
    /// connection is closed at once (`SHUTTING_DOWN`).
    pub fn open(&self, client: Opening) -> (Session, SessionLink) {
        let config = &self.shared.config;
        let (handle, link) = SessionHandle::new(
            &client,
            (config.outbox_capacity, config.outbox_max_bytes),
            config.resume,
            (&self.shared.shutdown, &self.shared.activity),
        );
        self.shared.counts.opened();
        let resume_token = config.resume.enabled().then(|| {
            let token = self.new_resume_token();
            handle.state().resume_token = Some(Arc::clone(&token));
            lock(&self.shared.resume_tokens).insert(Arc::clone(&token), Arc::downgrade(&handle));
            token
        });
        if !config.register_timeout.is_zero() {
            tokio::spawn(enforce_register_timeout(
                Arc::downgrade(&handle),
                Arc::downgrade(link.attachment()),
                config.register_timeout,
            ));
        }
        let session = Session {
            hub: self.clone(),
            attachment: Arc::clone(link.attachment()),
            handle,
            identity: client.identity,
            bucket: TokenBucket::new(config.rate_limit),
            ended: false,
            overflowed: None,
        };
        session.reply(Event::Welcome {
            session_id: session.id(),
            resume_token,
        });
        if self.is_draining() {
            link.kill(ErrorCode::ShuttingDown);
        }
        (session, link)
    }

    /// Sessions live and registry contents.
    pub fn census(&self) -> Census {
        Census {
            open_sessions: self.shared.counts.open(),
            away_sessions: self.shared.counts.away(),
            registry: self.shared.registry.census(),
        }
    }

    /// Tells every session, present and future, to close with `SHUTTING_DOWN`.
    pub fn shutdown(&self) {
        self.shared.shutdown.trigger();
    }

    /// Whether the gateway should receive new sessions: not shutting down,
    /// and its registry available.
    pub fn is_ready(&self) -> bool {
        !self.is_shutting_down() && !self.is_draining() && self.shared.registry.is_available()
    }

    /// Whether the node drains (see [`Hub::drain`]).
    pub fn is_draining(&self) -> bool {
        self.shared
            .draining
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Asks the gateway serving this hub to stop: it drains and exits as
    /// on SIGTERM.
    pub fn request_stop(&self) {
        self.shared.stop_requested.cancel();
    }

    /// Resolves once [`Hub::request_stop`] is called.
    pub async fn stop_requested(&self) {
        self.shared.stop_requested.cancelled().await;
    }

    /// Whether the registry can serve registrations (Redis reachable).
    pub fn registry_available(&self) -> bool {
        self.shared.registry.is_available()
    }

    /// Lets the registry leave the cluster (after the sessions closed).
    pub async fn leave(&self) {
        if let Some(link) = &self.shared.link {
            link.leave().await;
        }
    }

    /// Resolves once [`Hub::shutdown`] is called.
    pub async fn shutting_down(&self) {
        self.shared.shutdown.triggered().await;
    }

    /// Whether [`Hub::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.is_triggered()
    }

    fn forget_token(&self, token: Option<Arc<str>>) {
        if let Some(token) = token {
            lock(&self.shared.resume_tokens).remove(&token);
        }
    }

    /// Detaches a connection from its session. A clean end ends the
    /// session; an abrupt one holds a registered session away for the
    /// resume window. A connection superseded by a resume changes nothing.
    async fn detach(
        &self,
        handle: Arc<SessionHandle>,
        attachment: Arc<Attachment>,
        reason: EndReason,
    ) {
        let limits = self.shared.config.resume;
        attachment.uncount();
        let away = {
            let mut state = handle.state();
            match &state.attachment {
                Some(current) if Arc::ptr_eq(current, &attachment) => {}
                // Resumed elsewhere, or already ended.
                _ => return,
            }
            state.attachment = None;
            // A drain holds its sessions as a dropped connection does: the
            // client resumes them on another node.
            let dropped = matches!(
                reason,
                EndReason::ConnectionLost | EndReason::Closed(ErrorCode::Draining)
            );
            let hold = dropped
                && limits.enabled()
                && state.binding.is_some()
                && state.end_reason.is_none()
                && matches!(state.phase, Phase::Open)
                && !self.is_shutting_down();
            if hold {
                let wake = CancellationToken::new();
                state.away_generation += 1;
                let generation = state.away_generation;
                state.phase = Phase::Away {
                    wake: wake.clone(),
                    generation,
                    sent_through: state.last_seq,
                };
                state.since = std::time::SystemTime::now();
                state.announcing_away = true;
                state
                    .binding
                    .clone()
                    .map(|binding| (wake, generation, binding))
            } else {
                None
            }
        };
        let Some((wake, generation, (uid, role))) = away else {
            self.terminate(&handle, reason, Some(attachment.door()))
                .await;
            return;
        };
        self.shared.counts.went_away();
        metrics::disconnected("away");
        info!(session = %handle.id(), %uid, %role, door = attachment.door().as_str(), window_secs = limits.window.as_secs(), "away");
        if let Some(link) = &self.shared.link {
            link.set_away(&uid, role, handle.id(), true).await;
        }
        let peer = self
            .shared
            .registry
            .peer_of(&uid, role, handle.id())
            .await
            .ok();
        self.shared.hook(
            HookKind::PeerAway,
            HookSubject {
                uid: &uid,
                role,
                session: handle.id(),
                peer: peer.as_ref().map(|peer| peer.id()),
                door: Some(attachment.door()),
            },
            None,
        );
        if let Some(peer) = peer {
            let _ = peer.deliver(Event::PeerAway).await;
        }
        handle.state().announcing_away = false;
        tokio::spawn(self.clone().watch_away(handle, wake, generation));
    }

    /// Ends an away session when its window passes, unless it is resumed first.
    async fn watch_away(
        self,
        handle: Arc<SessionHandle>,
        wake: CancellationToken,
        generation: u64,
    ) {
        tokio::select! {
            () = tokio::time::sleep(self.shared.config.resume.window) => {}
            () = wake.cancelled() => {}
            () = self.shared.shutdown.triggered() => {}
        }
        let reason = {
            let state = handle.state();
            match &state.phase {
                // Still away from the same drop (a resume replaces the phase,
                // a later drop starts a new generation with its own watcher).
                Phase::Away {
                    generation: current,
                    ..
                } if *current == generation => match state.end_reason {
                    Some(code) => EndReason::Closed(code),
                    None if self.is_shutting_down() => EndReason::Closed(ErrorCode::ShuttingDown),
                    None => EndReason::ResumeWindowExpired,
                },
                _ => return,
            }
        };
        self.terminate(&handle, reason, None).await;
    }

    /// The one ending of every session: frees its role, tells the peer
    /// `byebye`, forgets its token.
    async fn terminate(
        &self,
        handle: &Arc<SessionHandle>,
        reason: EndReason,
        door: Option<DoorKind>,
    ) {
        let (binding, token, was_away, door) = {
            let mut state = handle.state();
            if matches!(state.phase, Phase::Ended) {
                return;
            }
            let was_away = matches!(state.phase, Phase::Away { .. });
            state.phase = Phase::Ended;
            state.retained.clear();
            state.retained_bytes = 0;
            let door = state.attachment.take().map(|a| a.door()).or(door);
            (
                state.binding.take(),
                state.resume_token.take(),
                was_away,
                door,
            )
        };
        if was_away {
            self.shared.counts.no_longer_away();
        }
        self.forget_token(token);
        metrics::disconnected(reason.label());
        let id = handle.id();
        let hook_door = door;
        // An away session has no door any more.
        let door = door.map_or("away", DoorKind::as_str);
        match binding {
            Some((uid, role)) => {
                let subject = |peer| HookSubject {
                    uid: &uid,
                    role,
                    session: id,
                    peer,
                    door: hook_door,
                };
                match self.shared.registry.unbind(&uid, role, id).await {
                    Ok(peer) => {
                        let peer_id = peer.as_ref().map(|peer| peer.id());
                        if peer_id.is_some() {
                            self.shared.hook(
                                HookKind::PairEnded,
                                subject(peer_id),
                                Some(reason.label()),
                            );
                        }
                        self.shared.hook(
                            HookKind::SessionEnded,
                            subject(peer_id),
                            Some(reason.label()),
                        );
                        let peer_told = match peer {
                            Some(peer) => peer.deliver(Event::ByeBye).await.is_ok(),
                            None => false,
                        };
                        info!(session = %id, %uid, %role, door, reason = reason.label(), peer_told, "disconnected");
                    }
                    Err(error) => {
                        self.shared.hook(
                            HookKind::SessionEnded,
                            subject(None),
                            Some(reason.label()),
                        );
                        warn!(session = %id, %uid, %role, door, %error, "disconnected, but the registry could not be updated");
                    }
                }
            }
            None => {
                tracing::debug!(session = %id, door, reason = reason.label(), "unregistered session ended");
            }
        }
        self.shared.counts.ended();
    }
}

/// Closes a connection whose session neither registered nor resumed in time.
async fn enforce_register_timeout(
    handle: Weak<SessionHandle>,
    attachment: Weak<Attachment>,
    timeout: Duration,
) {
    tokio::time::sleep(timeout).await;
    let (Some(handle), Some(attachment)) = (handle.upgrade(), attachment.upgrade()) else {
        return;
    };
    let idle = {
        let state = handle.state();
        state.binding.is_none() && matches!(state.phase, Phase::Open)
    };
    if idle {
        attachment.kill(ErrorCode::RegisterTimeout);
    }
}

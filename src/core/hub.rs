//! The rules: register, replace, relay, resume, disconnect. Every door
//! funnels its connections through [`Hub::open`] and [`Session`]; nothing
//! else decides what a request means.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::command::{Command, Relay, Request, RequestId, Role, Uid};
use super::error::{EndReason, ErrorCode, Rejection};
use super::event::Event;
use super::handover::{SessionExport, SessionExporter};
use super::identity::Identity;
use super::kill::ShutdownSignal;
use super::limits::{RateLimit, TokenBucket, Verdict};
use super::registry::{Peer, Registry, RegistryCensus, RouteError};
use super::session::{
    Attachment, Delivery, DeliveryError, DoorKind, Phase, ResumeLimits, SessionHandle, SessionId,
    SessionLink, estimated_bytes,
};
use crate::sync::lock;
use crate::telemetry::metrics;

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
    config: HubConfig,
    shutdown: ShutdownSignal,
    open_sessions: AtomicUsize,
    away_sessions: AtomicUsize,
    /// Resume token → session. Tokens are secrets: never logged.
    resume_tokens: Mutex<HashMap<Arc<str>, Weak<SessionHandle>>>,
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

/// 256 random bits, URL-safe, after the registry's tag (which names the
/// node in a cluster).
fn new_resume_token(tag: Option<&str>) -> Arc<str> {
    let bytes: [u8; 32] = rand::random();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    Arc::from(format!("{}{secret}", tag.unwrap_or("")))
}

/// Why a resume of this session cannot go ahead, if it cannot: the same
/// checks whether the session is on this node or handed over by another.
fn check_resumable(
    theirs: &super::session::State,
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
            if let Some(stale) = theirs.attachment.take() {
                // Its old connection here is half-open: the new one, on
                // another node, takes over.
                stale.kill(ErrorCode::Replaced);
            }
            let was_away = match std::mem::replace(&mut theirs.phase, Phase::Ended) {
                Phase::Away { wake, .. } => {
                    wake.cancel();
                    true
                }
                _ => false,
            };
            let missed = theirs
                .retained
                .drain(..)
                .filter_map(|delivery| {
                    let seq = delivery.seq.filter(|seq| *seq > last_seq)?;
                    Some((seq, (*delivery.event).clone()))
                })
                .collect();
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
            self.away_sessions.fetch_sub(1, Ordering::Relaxed);
        }
        self.open_sessions.fetch_sub(1, Ordering::Relaxed);
        metrics::disconnected("handed_over");
        info!(session = %export.session_id, uid = %export.uid, role = %export.role, missed = export.missed.len(), "handed the session to another node for a resume");
        Ok(export)
    }
}

impl Hub {
    /// A hub over `registry`.
    pub fn new(registry: Arc<dyn Registry>, config: HubConfig) -> Hub {
        let hub = Hub {
            shared: Arc::new(Shared {
                registry,
                config,
                shutdown: ShutdownSignal::default(),
                open_sessions: AtomicUsize::new(0),
                away_sessions: AtomicUsize::new(0),
                resume_tokens: Mutex::new(HashMap::new()),
            }),
        };
        let exporter: Weak<dyn SessionExporter> = Arc::downgrade(&hub.shared) as Weak<Shared>;
        hub.shared.registry.set_exporter(exporter);
        hub
    }

    fn new_resume_token(&self) -> Arc<str> {
        new_resume_token(self.shared.registry.resume_token_tag())
    }

    /// Opens a session for a new connection: the door keeps the [`Session`]
    /// to submit requests and the [`SessionLink`] to write events. `welcome`
    /// is already queued. `identity` is who the connection authenticated as
    /// (`None` when authentication is off).
    pub fn open(&self, door: DoorKind, identity: Option<Identity>) -> (Session, SessionLink) {
        let config = &self.shared.config;
        let (handle, link) = SessionHandle::new(
            door,
            (config.outbox_capacity, config.outbox_max_bytes),
            config.resume,
            &self.shared.shutdown,
        );
        self.shared.open_sessions.fetch_add(1, Ordering::Relaxed);
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
            identity,
            bucket: TokenBucket::new(config.rate_limit),
            ended: false,
            overflowed: None,
        };
        session.reply(Event::Welcome {
            session_id: session.id(),
            resume_token,
        });
        (session, link)
    }

    /// Sessions live and registry contents.
    pub fn census(&self) -> Census {
        Census {
            open_sessions: self.shared.open_sessions.load(Ordering::Relaxed),
            away_sessions: self.shared.away_sessions.load(Ordering::Relaxed),
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
        !self.is_shutting_down() && self.shared.registry.is_available()
    }

    /// Whether the registry can serve registrations (Redis reachable).
    pub fn registry_available(&self) -> bool {
        self.shared.registry.is_available()
    }

    /// Lets the registry leave the cluster (after the sessions closed).
    pub async fn leave(&self) {
        self.shared.registry.leave().await;
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
            let hold = reason == EndReason::ConnectionLost
                && limits.enabled()
                && state.binding.is_some()
                && matches!(state.phase, Phase::Open)
                && !self.is_shutting_down();
            if hold {
                let wake = CancellationToken::new();
                state.away_generation += 1;
                let generation = state.away_generation;
                state.phase = Phase::Away {
                    wake: wake.clone(),
                    generation,
                };
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
        self.shared.away_sessions.fetch_add(1, Ordering::Relaxed);
        metrics::disconnected("away");
        info!(session = %handle.id(), %uid, %role, door = attachment.door().as_str(), window_secs = limits.window.as_secs(), "away");
        self.shared
            .registry
            .set_away(&uid, role, handle.id(), true)
            .await;
        if let Ok(peer) = self.shared.registry.peer_of(&uid, role, handle.id()).await {
            let _ = peer.deliver(Event::PeerAway).await;
        }
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
            self.shared.away_sessions.fetch_sub(1, Ordering::Relaxed);
        }
        self.forget_token(token);
        metrics::disconnected(reason.label());
        let id = handle.id();
        // An away session has no door any more.
        let door = door.map_or("away", DoorKind::as_str);
        match binding {
            Some((uid, role)) => match self.shared.registry.unbind(&uid, role, id).await {
                Ok(peer) => {
                    let peer_told = match peer {
                        Some(peer) => peer.deliver(Event::ByeBye).await.is_ok(),
                        None => false,
                    };
                    info!(session = %id, %uid, %role, door, reason = reason.label(), peer_told, "disconnected");
                }
                Err(error) => {
                    warn!(session = %id, %uid, %role, door, %error, "disconnected, but the registry could not be updated");
                }
            },
            None => {
                tracing::debug!(session = %id, door, reason = reason.label(), "unregistered session ended");
            }
        }
        self.shared.open_sessions.fetch_sub(1, Ordering::Relaxed);
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

/// One client connection's view of its session, owned by the door task
/// that serves it.
///
/// Dropping it without calling [`Session::end`] still detaches it (as
/// [`EndReason::ConnectionLost`]): whatever ends a connection, its session
/// is held away or ended, and its peer told.
pub struct Session {
    hub: Hub,
    handle: Arc<SessionHandle>,
    attachment: Arc<Attachment>,
    identity: Option<Identity>,
    bucket: TokenBucket,
    ended: bool,
    /// The peer a relay found full, closed once the sender is answered.
    overflowed: Option<Peer>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.handle.id())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The session id.
    pub fn id(&self) -> SessionId {
        self.handle.id()
    }

    /// The registered uid and role, if registered.
    pub fn registration(&self) -> Option<(Uid, Role)> {
        self.handle.state().binding.clone()
    }

    /// Carries out one request. Every outcome, success or failure, is queued
    /// as events on this session's own outbox (`ack` / `error` last).
    pub async fn handle(&mut self, request: Request) {
        let Request {
            id,
            command,
            client_chosen_id,
        } = request;
        match self.bucket.take(Instant::now()) {
            Verdict::Allowed => {}
            verdict => {
                let wait = self.bucket.retry_after();
                self.reply(Event::error(
                    Rejection::new(
                        ErrorCode::RateLimited,
                        format!("too many requests; retry in {} ms", wait.as_millis().max(1)),
                    ),
                    id,
                ));
                if verdict == Verdict::Persisting {
                    self.attachment.kill(ErrorCode::RateLimited);
                }
                return;
            }
        }
        {
            let mut state = self.handle.state();
            let attached = state
                .attachment
                .as_ref()
                .is_some_and(|current| Arc::ptr_eq(current, &self.attachment));
            if !attached {
                // This connection lost its session (dropped, or taken over by
                // a resume) while requests were still buffered: they are not
                // applied; the client re-sends them after resuming.
                return;
            }
            if let Some(id) = id.filter(|_| client_chosen_id) {
                if state.resumed && id <= state.highest_request_id {
                    // A re-send after a resume: acknowledged, not applied again.
                    drop(state);
                    self.reply(Event::Ack { id });
                    return;
                }
                // Recorded in the same critical section as the attachment
                // check, so a concurrent resume's horizon includes it.
                state.highest_request_id = state.highest_request_id.max(id);
            }
        }
        let outcome = match command {
            Command::Register { uid, role } => self.register(uid, role).await,
            Command::Relay(relay) => self.relay(relay).await,
            Command::IpAddr => {
                let addresses = (self.hub.shared.config.addresses)();
                self.reply(Event::IpAddrs(addresses));
                Ok(())
            }
            Command::Resume { token, last_seq } => self.resume(&token, last_seq).await,
        };
        self.conclude(id, outcome);
        // A peer that could not take a relayed event is closed after the
        // sender's `error SLOW_CONSUMER` is queued: its `byebye` comes second.
        if let Some(peer) = self.overflowed.take() {
            peer.close_slow();
        }
    }

    /// Resolves when the server closes this session's connection (the
    /// same signal as [`SessionLink::killed`], for a door whose link lives
    /// in another task).
    pub fn killed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.attachment.killed()
    }

    /// Why the server closed this session's connection, once it has.
    pub fn kill_reason(&self) -> Option<ErrorCode> {
        self.attachment.kill_reason()
    }

    /// Answers a request that the door could not decode.
    pub fn reject(&self, id: Option<RequestId>, rejection: Rejection) {
        self.reply(Event::error(rejection, id));
    }

    /// Detaches this connection: a clean end ends the session and tells the
    /// peer `byebye`; an abrupt one holds the session away for a resume.
    pub async fn end(mut self, reason: EndReason) {
        self.ended = true;
        let handle = Arc::clone(&self.handle);
        let attachment = Arc::clone(&self.attachment);
        self.hub.detach(handle, attachment, reason).await;
    }

    fn conclude(&self, id: Option<RequestId>, outcome: Result<(), Rejection>) {
        match (outcome, id) {
            (Ok(()), Some(id)) => self.reply(Event::Ack { id }),
            (Ok(()), None) => {}
            (Err(rejection), id) => self.reply(Event::error(rejection, id)),
        }
    }

    /// Queues an event for this session itself. A full outbox closes the
    /// session as a slow consumer; nothing else can be done for it.
    fn reply(&self, event: Event) {
        let _ = self.handle.deliver(event);
    }

    async fn register(&mut self, uid: Uid, role: Role) -> Result<(), Rejection> {
        if let Some((uid, role)) = self.registration() {
            return Err(Rejection::new(
                ErrorCode::AlreadyRegistered,
                format!("this session is already registered as {role} {uid}"),
            ));
        }
        if self.hub.is_shutting_down() {
            return Err(Rejection::new(
                ErrorCode::ShuttingDown,
                "the server is shutting down",
            ));
        }
        let max_uid_bytes = self.hub.shared.config.max_uid_bytes;
        if uid.as_str().len() > max_uid_bytes {
            return Err(Rejection::bad_request(format!(
                "uid must be at most {max_uid_bytes} bytes"
            )));
        }
        if let Some(identity) = &self.identity {
            identity.permits(&uid, role)?;
        }
        let bound = self
            .hub
            .shared
            .registry
            .bind(&uid, role, &self.handle)
            .await
            .map_err(|e| Rejection::new(ErrorCode::Unavailable, e.to_string()))?;
        self.handle.state().binding = Some((uid.clone(), role));
        self.attachment.count_as(role);
        let replaced_away = bound.replaced_remote_away
            || match &bound.replaced {
                Some(old) => {
                    let was_away = old.is_away();
                    old.kill(ErrorCode::Replaced);
                    was_away
                }
                None => false,
            };
        let door = self.attachment.door().as_str();
        // A registration is logged at debug: the `paired` and
        // `disconnected` lines carry the same fields, and a line per
        // session costs setup rate (docs/OPERATIONS.md#logs). Taking a
        // role over from another session is worth a line of its own.
        if bound.replaced.is_some() {
            info!(session = %self.id(), %uid, %role, door, replaced = true, "registered");
        } else {
            tracing::debug!(session = %self.id(), %uid, %role, door, replaced = false, "registered");
        }
        self.reply(Event::Registered {
            uid: uid.clone(),
            role,
            peer_present: bound.peer.is_some(),
        });
        if let Some(peer) = &bound.peer {
            let (web, app) = match role {
                Role::Web => (self.id(), peer.id()),
                Role::App => (peer.id(), self.id()),
            };
            info!(%uid, %web, %app, "paired");
            if peer.is_away() {
                self.reply(Event::PeerAway);
            }
            if replaced_away {
                let _ = peer.deliver(Event::PeerBack).await;
            }
            match role {
                Role::App => self.reply(Event::SyncFrom),
                Role::Web => {
                    let _ = peer.deliver(Event::SyncFrom).await;
                }
            }
        }
        Ok(())
    }

    async fn relay(&mut self, relay: Relay) -> Result<(), Rejection> {
        let (uid, role) = self.registration().ok_or_else(|| {
            Rejection::new(
                ErrorCode::NotRegistered,
                "register before sending relayed events",
            )
        })?;
        if matches!(relay, Relay::SyncTo(_)) && role != Role::App {
            return Err(Rejection::new(
                ErrorCode::WrongRole,
                "syncto goes from app to web only",
            ));
        }
        let registry = &self.hub.shared.registry;
        let route = match registry.peer_of_now(&uid, role, self.id()) {
            Some(route) => route,
            None => registry.peer_of(&uid, role, self.id()).await,
        };
        let peer = route.map_err(|e| match e {
            RouteError::NoPeer => Rejection::new(ErrorCode::NoPeer, "the peer is not connected"),
            RouteError::NotOwner => Rejection::new(
                ErrorCode::Replaced,
                "a newer session registered the same uid and role",
            ),
            RouteError::Registry(e) => Rejection::new(ErrorCode::Unavailable, e.to_string()),
        })?;
        let kind = relay.kind();
        let offered = peer.offer(Event::Relayed(relay)).await;
        if offered == Err(DeliveryError::SlowConsumer) {
            // Closed once the sender has its answer (see `handle`).
            self.overflowed = Some(peer);
        }
        offered
            .map(|()| metrics::relayed(kind, self.attachment.door()))
            .map_err(|e| match e {
            DeliveryError::SlowConsumer => Rejection::new(
                ErrorCode::SlowConsumer,
                "the peer could not take the event and was disconnected; the event was not delivered",
            ),
            DeliveryError::Gone => Rejection::new(ErrorCode::NoPeer, "the peer is not connected"),
            DeliveryError::Unreachable => Rejection::new(
                ErrorCode::Unavailable,
                "the peer's node could not be reached; the event was not delivered",
            ),
        })
    }

    /// Moves this connection onto the session that `token` belongs to.
    async fn resume(&mut self, token: &str, last_seq: u64) -> Result<(), Rejection> {
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
            let registry = &self.hub.shared.registry;
            return match registry
                .take_session(token, last_seq, self.identity.as_ref())
                .await?
            {
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
            if let Some(stale) = theirs.attachment.replace(Arc::clone(&attachment)) {
                // The session's old connection is still half-open: this
                // one takes over.
                stale.kill(ErrorCode::Replaced);
            }
            let was_away = match std::mem::replace(&mut theirs.phase, Phase::Open) {
                Phase::Away { wake, .. } => {
                    wake.cancel();
                    true
                }
                _ => false,
            };
            let old_token = theirs.resume_token.replace(Arc::clone(&new_token));
            theirs.resumed = true;
            let missed: Vec<Delivery> = theirs
                .retained
                .iter()
                .filter(|delivery| delivery.seq.is_some_and(|seq| seq > last_seq))
                .cloned()
                .collect();
            let replayed = missed.len();
            attachment.set_resume_preface(
                target.id(),
                (uid.clone(), role),
                Arc::clone(&new_token),
                missed,
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
            self.hub
                .shared
                .away_sessions
                .fetch_sub(1, Ordering::Relaxed);
        }
        // The connection's own provisional session is consumed.
        self.hub
            .shared
            .open_sessions
            .fetch_sub(1, Ordering::Relaxed);
        self.handle = target;
        self.attachment.count_as(role);
        metrics::resumed(replayed);
        let door = self.attachment.door().as_str();
        info!(session = %self.id(), %uid, %role, door, replayed, was_away, "resumed");
        if was_away {
            self.hub
                .shared
                .registry
                .set_away(&uid, role, self.id(), false)
                .await;
        }
        if was_away
            && let Ok(peer) = self
                .hub
                .shared
                .registry
                .peer_of(&uid, role, self.id())
                .await
        {
            let _ = peer.deliver(Event::PeerBack).await;
        }
        Ok(())
    }
}

impl Session {
    /// Takes over, for this connection, a session that another node handed
    /// over for this resume.
    async fn adopt(&mut self, export: SessionExport, token: &str) -> Result<(), Rejection> {
        let shared = &self.hub.shared;
        let handle = SessionHandle::adopted(export.session_id, shared.config.resume);
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
        let adopted = shared.registry.adopt(&uid, role, token, &handle).await;
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
        if was_away && let Ok(peer) = shared.registry.peer_of(&uid, role, handle.id()).await {
            let _ = peer.deliver(Event::PeerBack).await;
        }
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // A request cut short between a full peer and its answer.
        if let Some(peer) = self.overflowed.take() {
            peer.close_slow();
        }
        if self.ended {
            return;
        }
        self.ended = true;
        let hub = self.hub.clone();
        let handle = Arc::clone(&self.handle);
        let attachment = Arc::clone(&self.attachment);
        let reason = match attachment.kill_reason() {
            Some(code) => EndReason::Closed(code),
            None => EndReason::ConnectionLost,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { hub.detach(handle, attachment, reason).await });
            }
            Err(_) => {
                // No runtime left (process exit): nothing to notify anyway.
                hub.shared.open_sessions.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

//! A connection's view of its session: its requests, in order, and what
//! they do (register, relay, ipaddr, iceservers, callreport); `resume` is
//! in `super::resume`.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use tracing::info;

use crate::core::call_report::CallReport;
use crate::core::command::{Command, Relay, Request, RequestId, Role, Uid};
use crate::core::error::{EndReason, ErrorCode, Rejection};
use crate::core::event::Event;
use crate::core::identity::Identity;
use crate::core::limits::{TokenBucket, Verdict};
use crate::core::registry::{Peer, RouteError};
use crate::core::session::{Attachment, DeliveryError, SessionHandle, SessionId};
use crate::telemetry::metrics;

use super::{HookSubject, Hub};
use crate::core::hooks::HookKind;

/// One client connection's view of its session, owned by the door task
/// that serves it.
///
/// Dropping it without calling [`Session::end`] still detaches it (as
/// [`EndReason::ConnectionLost`]): whatever ends a connection, its session
/// is held away or ended, and its peer told.
pub struct Session {
    pub(super) hub: Hub,
    pub(super) handle: Arc<SessionHandle>,
    pub(super) attachment: Arc<Attachment>,
    pub(super) identity: Option<Identity>,
    pub(super) bucket: TokenBucket,
    pub(super) ended: bool,
    /// The peer a relay found full, closed once the sender is answered.
    pub(super) overflowed: Option<Peer>,
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
    ///
    /// The rate limit and the attachment check run when this is called;
    /// the future carries out the command. Not an `async fn`, which would
    /// hold the request and its parts side by side in every connection
    /// task's largest state.
    pub fn handle(&mut self, request: Request) -> impl Future<Output = ()> + Send + '_ {
        let Request {
            id,
            command,
            client_chosen_id,
        } = request;
        let admitted = self.admit(id, client_chosen_id);
        async move {
            if !admitted {
                return;
            }
            // Registering and resuming are boxed: their futures are large
            // and rare, and each connection's task holds this one inline,
            // sized for its largest branch (a relay's is small).
            let outcome = match command {
                Command::Register { uid, role } => Box::pin(self.register(uid, role)).await,
                Command::Relay(relay) => self.relay(relay).await,
                Command::IpAddr => {
                    let addresses = (self.hub.shared.config.addresses)();
                    self.reply(Event::IpAddrs(addresses));
                    Ok(())
                }
                Command::IceServers => self.ice_servers(),
                Command::CallReport(report) => Box::pin(self.call_report(report)).await,
                Command::Resume { token, last_seq } => {
                    Box::pin(self.resume(&token, last_seq)).await
                }
            };
            self.conclude(id, outcome);
            // A peer that could not take a relayed event is closed after the
            // sender's `error SLOW_CONSUMER` is queued: its `byebye` comes second.
            if let Some(peer) = self.overflowed.take() {
                peer.close_slow();
            }
        }
    }

    /// Whether a request may be carried out: within the rate limit (else it
    /// is answered `RATE_LIMITED`), and sent on the connection the session
    /// is attached to; a re-sent request after a resume is acknowledged
    /// here and not carried out again.
    fn admit(&mut self, id: Option<RequestId>, client_chosen_id: bool) -> bool {
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
                return false;
            }
        }
        let mut state = self.handle.state();
        let attached = state
            .attachment
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, &self.attachment));
        if !attached {
            // This connection lost its session (dropped, or taken over by
            // a resume) while requests were still buffered: they are not
            // applied; the client re-sends them after resuming.
            return false;
        }
        if let Some(id) = id.filter(|_| client_chosen_id) {
            if state.resumed && id <= state.highest_request_id {
                // A re-send after a resume: acknowledged, not applied again.
                drop(state);
                self.reply(Event::Ack { id });
                return false;
            }
            // Recorded in the same critical section as the attachment
            // check, so a concurrent resume's horizon includes it.
            state.highest_request_id = state.highest_request_id.max(id);
        }
        true
    }

    /// Resolves when the server closes this session's connection (the
    /// same signal as [`SessionLink::killed`](crate::core::SessionLink::killed), for a door whose link lives
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
        // Boxed: once per connection, and the door's task would otherwise
        // hold this large future inline for the connection's whole life.
        Box::pin(self.hub.detach(handle, attachment, reason)).await;
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
    pub(super) fn reply(&self, event: Event) {
        let _ = self.handle.answer(event);
    }

    async fn register(&mut self, uid: Uid, role: Role) -> Result<(), Rejection> {
        if let Some((uid, role)) = self.registration() {
            return Err(Rejection::new(
                ErrorCode::AlreadyRegistered,
                format!("this session is already registered as {role} {uid}"),
            ));
        }
        if self.hub.is_shutting_down() || self.hub.is_draining() {
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
        // From the moment the binding can be seen (in Redis, by a peer's
        // registration on any node) until `registered` and its follow-ups
        // are queued, what others send this session waits behind them.
        let _held = self.handle.hold_deliveries();
        let bound = self
            .hub
            .shared
            .registry
            .bind(&uid, role, &self.handle)
            .await
            .map_err(|e| Rejection::new(ErrorCode::Unavailable, e.to_string()))?;
        {
            let mut state = self.handle.state();
            state.binding = Some((uid.clone(), role));
            state.since = std::time::SystemTime::now();
        }
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
        let subject = || HookSubject {
            uid: &uid,
            role,
            session: self.handle.id(),
            peer: bound.peer.as_ref().map(|peer| peer.id()),
            door: Some(self.attachment.door()),
        };
        let shared = &self.hub.shared;
        shared.hook(HookKind::SessionRegistered, subject(), None);
        if bound.peer.is_some() {
            shared.hook(HookKind::PairStarted, subject(), None);
        }
        self.reply(Event::Registered {
            uid: uid.clone(),
            role,
            peer_present: bound.peer.is_some(),
            ice_servers: self.hub.ice_grant(&uid),
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
        // `_held` drops here: what others sent meanwhile follows.
        Ok(())
    }

    /// Answers `iceservers` with a fresh list: an empty one when none are
    /// configured, so every registered session may ask.
    fn ice_servers(&self) -> Result<(), Rejection> {
        let (uid, _) = self.registration().ok_or_else(|| {
            Rejection::new(
                ErrorCode::NotRegistered,
                "register or resume before asking for ICE servers",
            )
        })?;
        let grant = self.hub.ice_grant(&uid).unwrap_or_default();
        self.reply(Event::IceServers(grant));
        Ok(())
    }

    /// Takes a `callreport` into the join of call outcomes, which happens
    /// where the pair's web session lives: an app's report goes to the web
    /// session's node when that is another (and is joined here if it
    /// cannot get there, or there is no web session). Nothing goes to the
    /// peer's client.
    async fn call_report(&self, report: CallReport) -> Result<(), Rejection> {
        let (uid, role) = self.registration().ok_or_else(|| {
            Rejection::new(
                ErrorCode::NotRegistered,
                "register or resume before reporting a call",
            )
        })?;
        let door = self.attachment.door();
        metrics::call_reported(role.label(), door.label(), report.result.as_str());
        if role == Role::App {
            let registry = &self.hub.shared.registry;
            let route = match registry.peer_of_now(&uid, role, self.id()) {
                Some(route) => route,
                None => registry.peer_of(&uid, role, self.id()).await,
            };
            if let Some(forwarded) = route
                .ok()
                .as_ref()
                .and_then(|web| web.forward_call(door, report.clone()))
                && forwarded.await.is_ok()
            {
                return Ok(());
            }
        }
        self.hub.shared.join_call(&uid, role, door, report);
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
            .map(|()| {
                metrics::relayed(kind.label(), self.attachment.door().label());
                self.hub.shared.activity.relayed();
            })
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
                hub.shared.counts.ended();
            }
        }
    }
}

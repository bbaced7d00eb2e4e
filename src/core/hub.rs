//! The rules: register, replace, relay, disconnect. Every door funnels its
//! sessions through [`Hub::open`] and [`Session`]; nothing else decides what
//! a request means.

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::command::{Command, Relay, Request, RequestId, Role, Uid};
use super::error::{EndReason, ErrorCode, Rejection};
use super::event::Event;
use super::registry::{Registry, RegistryCensus, RouteError};
use super::session::{DeliveryError, DoorKind, SessionHandle, SessionId, SessionLink};

/// Where the answer to `ipaddr` comes from.
pub type AddressSource = Arc<dyn Fn() -> Arc<[Ipv4Addr]> + Send + Sync>;

/// Settings the rules need.
#[derive(Clone)]
pub struct HubConfig {
    /// Capacity of each session's outbox, in events.
    pub outbox_capacity: usize,
    /// Produces the addresses sent in answer to `ipaddr`.
    pub addresses: AddressSource,
}

impl fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubConfig")
            .field("outbox_capacity", &self.outbox_capacity)
            .finish_non_exhaustive()
    }
}

/// How many sessions are live and what the registry holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Sessions opened and not yet ended (registered or not).
    pub open_sessions: usize,
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
    shutdown: CancellationToken,
    open_sessions: AtomicUsize,
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

impl Hub {
    /// A hub over `registry`.
    pub fn new(registry: Arc<dyn Registry>, config: HubConfig) -> Hub {
        Hub {
            shared: Arc::new(Shared {
                registry,
                config,
                shutdown: CancellationToken::new(),
                open_sessions: AtomicUsize::new(0),
            }),
        }
    }

    /// Opens a session for a new connection: the door keeps the [`Session`]
    /// to submit requests and the [`SessionLink`] to write events. `welcome`
    /// is already queued.
    pub fn open(&self, door: DoorKind) -> (Session, SessionLink) {
        let (handle, link) = SessionHandle::new(
            door,
            self.shared.config.outbox_capacity,
            &self.shared.shutdown,
        );
        self.shared.open_sessions.fetch_add(1, Ordering::Relaxed);
        let session = Session {
            hub: self.clone(),
            handle,
            binding: None,
            ended: false,
        };
        session.reply(Event::Welcome {
            session_id: session.id(),
        });
        (session, link)
    }

    /// Sessions live and registry contents.
    pub fn census(&self) -> Census {
        Census {
            open_sessions: self.shared.open_sessions.load(Ordering::Relaxed),
            registry: self.shared.registry.census(),
        }
    }

    /// Tells every session, present and future, to close with `SHUTTING_DOWN`.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    /// Whether [`Hub::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.is_cancelled()
    }
}

/// The (uid, role) a session registered as.
#[derive(Clone, Debug)]
struct Binding {
    uid: Uid,
    role: Role,
}

/// One client session, owned by the door task that serves its connection.
///
/// Dropping a session without calling [`Session::end`] still cleans it up
/// (as [`EndReason::ConnectionLost`]): whatever ends a connection, its role
/// is freed and its peer told.
pub struct Session {
    hub: Hub,
    handle: Arc<SessionHandle>,
    binding: Option<Binding>,
    ended: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.handle.id())
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The session id.
    pub fn id(&self) -> SessionId {
        self.handle.id()
    }

    /// The registered uid and role, if registered.
    pub fn registration(&self) -> Option<(&Uid, Role)> {
        self.binding.as_ref().map(|b| (&b.uid, b.role))
    }

    /// Carries out one request. Every outcome, success or failure, is queued
    /// as events on this session's own outbox (`ack` / `error` last).
    pub async fn handle(&mut self, request: Request) {
        let Request { id, command } = request;
        let outcome = match command {
            Command::Register { uid, role } => self.register(uid, role).await,
            Command::Relay(relay) => self.relay(relay).await,
            Command::IpAddr => {
                let addresses = (self.hub.shared.config.addresses)();
                self.reply(Event::IpAddrs(addresses));
                Ok(())
            }
        };
        self.conclude(id, outcome);
    }

    /// Answers a request that the door could not decode.
    pub fn reject(&self, id: Option<RequestId>, rejection: Rejection) {
        self.reply(Event::error(rejection, id));
    }

    /// Ends the session: frees its role and tells the peer `byebye`.
    pub async fn end(mut self, reason: EndReason) {
        self.ended = true;
        let binding = self.binding.take();
        finish(self.hub.clone(), Arc::clone(&self.handle), binding, reason).await;
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
        if let Some(binding) = &self.binding {
            return Err(Rejection::new(
                ErrorCode::AlreadyRegistered,
                format!(
                    "this session is already registered as {} {}",
                    binding.role, binding.uid
                ),
            ));
        }
        if self.hub.is_shutting_down() {
            return Err(Rejection::new(
                ErrorCode::ShuttingDown,
                "the server is shutting down",
            ));
        }
        let bound = self
            .hub
            .shared
            .registry
            .bind(&uid, role, &self.handle)
            .await
            .map_err(|e| Rejection::new(ErrorCode::Internal, e.to_string()))?;
        let door = self.handle.door().as_str();
        info!(session = %self.id(), %uid, %role, door, replaced = bound.replaced, "registered");
        self.reply(Event::Registered {
            uid: uid.clone(),
            role,
            peer_present: bound.peer.is_some(),
        });
        if let Some(peer) = &bound.peer {
            info!(%uid, web = %pick(role, self.id(), peer.id()).0, app = %pick(role, self.id(), peer.id()).1, "paired");
            match role {
                Role::App => self.reply(Event::SyncFrom),
                Role::Web => {
                    let _ = peer.deliver(Event::SyncFrom);
                }
            }
        }
        self.binding = Some(Binding { uid, role });
        Ok(())
    }

    async fn relay(&self, relay: Relay) -> Result<(), Rejection> {
        let binding = self.binding.as_ref().ok_or_else(|| {
            Rejection::new(
                ErrorCode::NotRegistered,
                "register before sending relayed events",
            )
        })?;
        if matches!(relay, Relay::SyncTo(_)) && binding.role != Role::App {
            return Err(Rejection::new(
                ErrorCode::WrongRole,
                "syncto goes from app to web only",
            ));
        }
        let peer = self
            .hub
            .shared
            .registry
            .peer_of(&binding.uid, binding.role, self.id())
            .await
            .map_err(|e| match e {
                RouteError::NoPeer => {
                    Rejection::new(ErrorCode::NoPeer, "the peer is not connected")
                }
                RouteError::NotOwner => Rejection::new(
                    ErrorCode::Replaced,
                    "a newer session registered the same uid and role",
                ),
                RouteError::Registry(e) => Rejection::new(ErrorCode::Internal, e.to_string()),
            })?;
        peer.deliver(Event::Relayed(relay)).map_err(|e| match e {
            DeliveryError::SlowConsumer => Rejection::new(
                ErrorCode::SlowConsumer,
                "the peer could not keep up and was disconnected; the event was not delivered",
            ),
            DeliveryError::Gone => Rejection::new(ErrorCode::NoPeer, "the peer is not connected"),
        })
    }
}

/// (web id, app id) given this session's role.
fn pick(role: Role, me: SessionId, peer: SessionId) -> (SessionId, SessionId) {
    match role {
        Role::Web => (me, peer),
        Role::App => (peer, me),
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        let hub = self.hub.clone();
        let handle = Arc::clone(&self.handle);
        let binding = self.binding.take();
        let reason = match handle.kill_reason() {
            Some(code) => EndReason::Closed(code),
            None => EndReason::ConnectionLost,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(finish(hub, handle, binding, reason));
            }
            Err(_) => {
                // No runtime left (process exit): nothing to notify anyway.
                hub.shared.open_sessions.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// The one cleanup path of every session.
async fn finish(hub: Hub, handle: Arc<SessionHandle>, binding: Option<Binding>, reason: EndReason) {
    let door = handle.door().as_str();
    let id = handle.id();
    match binding {
        Some(Binding { uid, role }) => match hub.shared.registry.unbind(&uid, role, id).await {
            Ok(peer) => {
                let peer_told = match peer {
                    Some(peer) => peer.deliver(Event::ByeBye).is_ok(),
                    None => false,
                };
                info!(session = %id, %uid, %role, door, reason = reason.label(), peer_told, "disconnected");
            }
            Err(e) => {
                warn!(session = %id, %uid, %role, door, error = %e, "disconnected, but the registry could not be updated");
            }
        },
        None => {
            tracing::debug!(session = %id, door, reason = reason.label(), "unregistered session ended");
        }
    }
    hub.shared.open_sessions.fetch_sub(1, Ordering::Relaxed);
}

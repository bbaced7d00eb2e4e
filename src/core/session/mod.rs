//! A session's state: identity, registration, the events it was sent (with
//! their sequence numbers, retained for resumption) and the connection it is
//! attached to, if any.
//!
//! A session outlives its connections. The registry and the hub hold an
//! `Arc<SessionHandle>`; the door serving a connection holds the matching
//! [`SessionLink`] (the receiving end of the attachment's bounded outbox)
//! and writes whatever arrives on it. When a connection drops abruptly the
//! session goes *away* (no attachment) for the resume window and keeps
//! retaining events; `resume` attaches a new connection, possibly on
//! another door.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use super::admin::Activity;
use super::command::{Role, Uid};
use super::error::ErrorCode;
use super::event::Event;
use super::ice::IceGrant;
pub use super::ids::{DoorKind, SessionId};
use super::kill::{KillSwitch, Killed, ShutdownSignal};
use crate::sync::lock;
use crate::sync::outbox::{Outbox, PushError};
use crate::telemetry::metrics;

/// A new connection, as its door describes it to [`crate::core::Hub::open`].
#[derive(Clone, Debug)]
pub struct Opening {
    /// The door it came through.
    pub door: DoorKind,
    /// Who it authenticated as (`None` when authentication is off).
    pub identity: Option<super::identity::Identity>,
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// Whether the client can resume sessions (false for a seed Socket.IO
    /// client, which asked for no sequence numbers).
    pub can_resume: bool,
}

impl Opening {
    /// A connection through `door` from a client that can resume, with no
    /// identity or address (tests, tools).
    pub fn door(door: DoorKind) -> Opening {
        Opening {
            door,
            identity: None,
            remote_addr: None,
            can_resume: true,
        }
    }
}

/// Why an event could not be handed to a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The session could not take the event (its outbox, or its resume
    /// buffer while away, was full): it has been closed as a slow consumer.
    #[error("the receiving session could not keep up and was closed")]
    SlowConsumer,
    /// The session has ended.
    #[error("the receiving session has ended")]
    Gone,
    /// The session's node could not be reached (multi-node deployments).
    #[error("the receiving session's node could not be reached")]
    Unreachable,
}

/// An event on its way to a client, with its sequence number (`None` for
/// the connection-level `welcome` and `resumed`).
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The per-session sequence number.
    pub seq: Option<u64>,
    /// The event.
    pub event: Arc<Event>,
    /// When a relayed event was queued (for the relay latency metric).
    pub queued_at: Option<Instant>,
}

/// Bounds of what a session keeps for resumption.
#[derive(Clone, Copy, Debug)]
pub struct ResumeLimits {
    /// How long an abruptly disconnected session is held away; zero
    /// disables resumption.
    pub window: Duration,
    /// Most events retained per session.
    pub max_events: usize,
    /// Most bytes (estimated) retained per session.
    pub max_bytes: usize,
}

impl ResumeLimits {
    /// Whether sessions can be resumed at all.
    pub fn enabled(&self) -> bool {
        !self.window.is_zero()
    }
}

/// One connection serving a session: its outbox, its kill switch, and the
/// events to write before the outbox (the replay of a resume).
#[derive(Debug)]
pub(crate) struct Attachment {
    outbox: Outbox<Delivery>,
    kill_switch: Arc<KillSwitch>,
    door: DoorKind,
    /// The client's address, as the connection came from it.
    remote_addr: Option<SocketAddr>,
    /// Whether the client can resume a session (a seed Socket.IO client
    /// cannot): a drain tells it `reconnect`, else closes it for good.
    can_resume: bool,
    /// The role this connection is counted under in the connection gauge,
    /// once its session registered or resumed.
    counted_role: OnceLock<Role>,
    preface: Mutex<VecDeque<Delivery>>,
    has_preface: AtomicBool,
}

impl Attachment {
    /// Moves this connection from the unregistered to `role` in the gauge.
    pub(crate) fn count_as(&self, role: Role) {
        if self.counted_role.set(role).is_ok() {
            metrics::connection_closed(self.door.label(), None);
            metrics::connection_opened(self.door.label(), Some(role.label()));
        }
    }

    /// Removes this connection from the gauge.
    pub(crate) fn uncount(&self) {
        metrics::connection_closed(
            self.door.label(),
            self.counted_role.get().map(|role| role.label()),
        );
    }

    pub(crate) fn kill(&self, reason: ErrorCode) {
        self.kill_switch.kill(reason);
    }

    pub(crate) fn kill_saying(&self, reason: ErrorCode, message: Arc<str>) {
        self.kill_switch.kill_saying(reason, Some(message));
    }

    pub(crate) fn killed(&self) -> Killed {
        self.kill_switch.killed()
    }

    pub(crate) fn kill_reason(&self) -> Option<ErrorCode> {
        self.kill_switch.reason()
    }

    pub(crate) fn door(&self) -> DoorKind {
        self.door
    }

    pub(crate) fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    pub(crate) fn can_resume(&self) -> bool {
        self.can_resume
    }

    /// Queues events that the door writes before anything in the outbox,
    /// and wakes the door: nothing else may follow them (a request without
    /// an id that succeeds queues no `ack`), and a door that waits on its
    /// outbox must not sleep through them.
    pub(crate) fn set_preface(&self, events: impl IntoIterator<Item = Delivery>) {
        lock(&self.preface).extend(events);
        self.has_preface.store(true, Ordering::Release);
        self.outbox.wake_reader();
    }

    /// What a resumed connection writes first: `resumed` (unsequenced),
    /// then the events the client missed, in order.
    pub(crate) fn set_resume_preface(
        &self,
        session_id: SessionId,
        (uid, role): (Uid, Role),
        resume_token: Arc<str>,
        missed: Vec<Delivery>,
        ice_servers: Option<Arc<IceGrant>>,
    ) {
        let resumed = Delivery {
            queued_at: None,
            seq: None,
            event: Arc::new(Event::Resumed {
                session_id,
                uid,
                role,
                resume_token,
                replayed: missed.len(),
                ice_servers,
            }),
        };
        self.set_preface(std::iter::once(resumed).chain(missed));
    }
}

/// Where a session is in its life.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Attached to a connection (or not yet registered).
    Open,
    /// Its connection dropped abruptly; held for the resume window. The
    /// token is cancelled to cut the wait short (resume, replacement,
    /// overflow, shutdown).
    Away {
        wake: CancellationToken,
        generation: u64,
        /// The last sequence number sent to the connection that dropped:
        /// retained events up to it may make room for new ones (as while
        /// attached); those queued since never do.
        sent_through: u64,
    },
    /// Over: unbound, peer told.
    Ended,
}

/// The mutable state of a session, behind one short-held mutex.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) attachment: Option<Arc<Attachment>>,
    pub(crate) binding: Option<(Uid, Role)>,
    pub(crate) phase: Phase,
    /// Why the session must end, once decided while it was away.
    pub(crate) end_reason: Option<ErrorCode>,
    pub(crate) resume_token: Option<Arc<str>>,
    /// The last sequence number given out.
    pub(crate) last_seq: u64,
    /// Sequenced events kept for a resume, oldest first.
    pub(crate) retained: VecDeque<Delivery>,
    pub(crate) retained_bytes: usize,
    /// The highest sequence number dropped from `retained` (a resume from
    /// before it cannot be served).
    pub(crate) evicted_through: u64,
    /// Counts the session's drops (tells a stale away-watcher from the
    /// current one).
    pub(crate) away_generation: u64,
    /// The highest request id seen.
    pub(crate) highest_request_id: u64,
    /// Whether the session was ever resumed. From then on request ids must
    /// increase: one at or below `highest_request_id` is a re-send,
    /// acknowledged but not applied again.
    pub(crate) resumed: bool,
    /// When the session entered its present state (opened, registered,
    /// went away, resumed): what the admin API's presence shows.
    pub(crate) since: SystemTime,
    /// Set while a session that just went away has not yet told its peer
    /// `peer_away`: a resume waits for it, so that the peer never hears
    /// `peer_back` first.
    pub(crate) announcing_away: bool,
    /// Set while the session's `register` is being answered: events from
    /// others (a peer whose registration saw this one's binding first
    /// sends `syncfrom`) wait here and follow the answer, in order.
    #[allow(
        clippy::box_collection,
        reason = "one word in every session's state instead of three: held events are rare"
    )]
    pub(crate) registering: Option<Box<Vec<Event>>>,
}

/// Most events from others held for a session while its registration is
/// answered; past it they are refused as for a slow consumer.
const MAX_HELD_WHILE_REGISTERING: usize = 64;

impl State {
    /// Drops the oldest retained event (a resume that needs it then fails
    /// explicitly); false if none is retained.
    fn evict_oldest(&mut self) -> bool {
        let Some(oldest) = self.retained.pop_front() else {
            return false;
        };
        self.retained_bytes -= estimated_bytes(&oldest.event);
        self.evicted_through = oldest.seq.unwrap_or(self.evicted_through);
        true
    }

    /// A session's state before anything happened to it.
    fn fresh(attachment: Option<Arc<Attachment>>, resumed: bool) -> State {
        State {
            attachment,
            binding: None,
            phase: Phase::Open,
            end_reason: None,
            resume_token: None,
            last_seq: 0,
            retained: VecDeque::new(),
            retained_bytes: 0,
            evicted_through: 0,
            away_generation: 0,
            highest_request_id: 0,
            resumed,
            since: SystemTime::now(),
            announcing_away: false,
            registering: None,
        }
    }
}

/// Events from others held while a session's registration is answered;
/// dropping it queues them ([`SessionHandle::hold_deliveries`]).
pub(crate) struct HeldDeliveries(Arc<SessionHandle>);

impl Drop for HeldDeliveries {
    fn drop(&mut self) {
        self.0.release_deliveries();
    }
}

/// Holds `event` behind a registration being answered.
fn hold(held: &mut Vec<Event>, event: Event) -> Result<(), DeliveryError> {
    if held.len() >= MAX_HELD_WHILE_REGISTERING {
        return Err(DeliveryError::SlowConsumer);
    }
    held.push(event);
    Ok(())
}

/// Estimated memory of a retained event, for the byte bound.
pub(crate) fn estimated_bytes(event: &Event) -> usize {
    const OVERHEAD: usize = 96;
    OVERHEAD
        + match event {
            Event::Relayed(relay) => relay.payload_len(),
            Event::Error { message, .. } => message.len(),
            Event::IpAddrs(addresses) => addresses.len() * 16,
            Event::Notice(data) => data.len(),
            Event::IceServers(grant)
            | Event::Registered {
                ice_servers: Some(grant),
                ..
            }
            | Event::Resumed {
                ice_servers: Some(grant),
                ..
            } => grant.text_bytes(),
            Event::Registered {
                ice_servers: None, ..
            }
            | Event::Resumed {
                ice_servers: None, ..
            }
            | Event::Welcome { .. }
            | Event::PeerAway
            | Event::PeerBack
            | Event::SyncFrom
            | Event::ByeBye
            | Event::Reconnect { .. }
            | Event::Ack { .. } => 0,
        }
}

/// The shared side of a session: what the registry and peers hold.
#[derive(Debug)]
pub struct SessionHandle {
    id: SessionId,
    limits: ResumeLimits,
    /// The node's activity counts (errors sent are counted here).
    activity: Arc<Activity>,
    state: Mutex<State>,
}

impl SessionHandle {
    /// A session attached to a new connection, and the door's link to it.
    /// `capacity` and `max_bytes` bound the outbox in events and in
    /// (estimated) bytes; `shutdown` is the server-wide signal.
    pub(crate) fn new(
        client: &Opening,
        (capacity, max_bytes): (usize, usize),
        limits: ResumeLimits,
        (shutdown, activity): (&ShutdownSignal, &Arc<Activity>),
    ) -> (Arc<SessionHandle>, SessionLink) {
        let attachment = Arc::new(Attachment {
            outbox: Outbox::with_byte_bound(capacity, max_bytes, |delivery: &Delivery| {
                estimated_bytes(&delivery.event)
            }),
            kill_switch: Arc::new(shutdown.new_kill_switch()),
            door: client.door,
            remote_addr: client.remote_addr,
            can_resume: client.can_resume,
            counted_role: OnceLock::new(),
            preface: Mutex::new(VecDeque::new()),
            has_preface: AtomicBool::new(false),
        });
        metrics::connection_opened(client.door.label(), None);
        let handle = Arc::new(SessionHandle {
            id: SessionId::random(),
            limits,
            activity: Arc::clone(activity),
            state: Mutex::new(State::fresh(Some(Arc::clone(&attachment)), false)),
        });
        (handle, SessionLink { attachment })
    }

    /// A session handed over by another node (see `handover`), not yet
    /// attached: the hub attaches the resuming connection.
    pub(crate) fn adopted(
        id: SessionId,
        limits: ResumeLimits,
        activity: &Arc<Activity>,
    ) -> Arc<SessionHandle> {
        Arc::new(SessionHandle {
            id,
            limits,
            activity: Arc::clone(activity),
            state: Mutex::new(State::fresh(None, true)),
        })
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Queues an event without waiting, numbering and retaining it.
    ///
    /// Attached: a full outbox closes the session as a slow consumer (one
    /// slow reader never stalls another session or grows memory). Away: the
    /// event waits in the resume buffer; if it does not fit, the session is
    /// ended as a slow consumer and the sender told.
    pub fn deliver(&self, event: Event) -> Result<(), DeliveryError> {
        let mut state = self.state();
        if let Some(held) = state.registering.as_mut() {
            return hold(held, event);
        }
        self.queue(&mut state, event, true)
    }

    /// Queues the session's own answer: like [`SessionHandle::deliver`],
    /// but never held behind a registration being answered (it *is* the
    /// answer).
    pub fn answer(&self, event: Event) -> Result<(), DeliveryError> {
        self.queue(&mut self.state(), event, true)
    }

    /// From now until the returned guard is dropped, events from others
    /// wait (the session's `register` is being answered); then they are
    /// queued in order. A guard, so that no way out of the registration (an
    /// error, a cancelled task) leaves them held.
    pub(crate) fn hold_deliveries(self: &Arc<Self>) -> HeldDeliveries {
        self.state().registering = Some(Box::default());
        HeldDeliveries(Arc::clone(self))
    }

    /// Queues what waited while the registration was answered, in order,
    /// and lets later events through.
    fn release_deliveries(&self) {
        let mut state = self.state();
        for event in state
            .registering
            .take()
            .map(|held| *held)
            .unwrap_or_default()
        {
            let _ = self.queue(&mut state, event, true);
        }
    }

    /// Like [`SessionHandle::deliver`], but a session that cannot take the
    /// event is left open: the caller closes it with
    /// [`SessionHandle::kill`]`(SlowConsumer)` once it has answered its own
    /// client, so that the sender's `error` comes before the peer's
    /// `byebye`.
    pub fn offer(&self, event: Event) -> Result<(), DeliveryError> {
        let mut state = self.state();
        if let Some(held) = state.registering.as_mut() {
            return hold(held, event);
        }
        self.queue(&mut state, event, false)
    }

    fn queue(
        &self,
        state: &mut State,
        event: Event,
        close_on_overflow: bool,
    ) -> Result<(), DeliveryError> {
        if matches!(state.phase, Phase::Ended) {
            return Err(DeliveryError::Gone);
        }
        let sequenced = event.is_sequenced();
        let seq = sequenced.then(|| {
            state.last_seq += 1;
            state.last_seq
        });
        if let Event::Error { code, .. } = &event {
            metrics::error_sent(code.as_str());
            self.activity.error_sent(*code);
        }
        let queued_at = matches!(event, Event::Relayed(_)).then(Instant::now);
        let delivery = Delivery {
            seq,
            event: Arc::new(event),
            queued_at,
        };
        let retain = sequenced && self.limits.enabled();
        if retain {
            let bytes = estimated_bytes(&delivery.event);
            let sent_through = match state.phase {
                Phase::Away { sent_through, .. } => Some(sent_through),
                Phase::Open | Phase::Ended => None,
            };
            let limits = self.limits;
            let overflows = |state: &State| {
                state.retained.len() + 1 > limits.max_events
                    || state.retained_bytes + bytes > limits.max_bytes
            };
            if let Some(sent_through) = sent_through {
                // Away: what the connection was already sent makes room
                // first (a resume that needs it fails explicitly, as while
                // attached); what was queued while away is never dropped.
                while overflows(state)
                    && state
                        .retained
                        .front()
                        .and_then(|oldest| oldest.seq)
                        .is_some_and(|seq| seq <= sent_through)
                {
                    state.evict_oldest();
                }
            }
            if sent_through.is_some() && overflows(state) {
                state.last_seq -= 1;
                if close_on_overflow {
                    Self::end_while_away(state, ErrorCode::SlowConsumer);
                }
                return Err(DeliveryError::SlowConsumer);
            }
            state.retained_bytes += bytes;
            crate::sync::push_back_sparing(&mut state.retained, delivery.clone());
            while state.retained.len() > self.limits.max_events
                || state.retained_bytes > self.limits.max_bytes
            {
                if !state.evict_oldest() {
                    break;
                }
            }
        }
        let Some(attachment) = &state.attachment else {
            // Away: retained above, delivered on resume.
            return Ok(());
        };
        match attachment.outbox.push(delivery) {
            Ok(()) => Ok(()),
            Err(PushError::Full(_)) => {
                if close_on_overflow {
                    attachment.kill(ErrorCode::SlowConsumer);
                }
                Err(DeliveryError::SlowConsumer)
            }
            // The connection is going; a retained event survives it.
            Err(PushError::Closed(_)) if retain => Ok(()),
            Err(PushError::Closed(_)) => Err(DeliveryError::Gone),
        }
    }

    /// Closes the session from the server side (`REPLACED`, ...). The first
    /// reason wins. An attached session's connection is closed; an away
    /// session ends at once.
    pub fn kill(&self, reason: ErrorCode) {
        let _ = self.kill_with(reason, None);
    }

    /// [`SessionHandle::kill`] with the farewell's message (an operator's
    /// reason for a kick). Returns whether the session was still live.
    pub(crate) fn kill_with(&self, reason: ErrorCode, message: Option<Arc<str>>) -> bool {
        let mut state = self.state();
        if matches!(state.phase, Phase::Ended) {
            return false;
        }
        if let Some(attachment) = state.attachment.clone() {
            // A kicked session must not be resumed while its connection
            // is still closing.
            if reason == ErrorCode::Kicked && state.end_reason.is_none() {
                state.end_reason = Some(reason);
            }
            match message {
                Some(message) => attachment.kill_saying(reason, message),
                None => attachment.kill(reason),
            }
            return true;
        }
        if matches!(state.phase, Phase::Away { .. }) {
            Self::end_while_away(&mut state, reason);
            return true;
        }
        false
    }

    /// Marks an away session for ending and wakes its watcher.
    fn end_while_away(state: &mut State, reason: ErrorCode) {
        if state.end_reason.is_none() {
            state.end_reason = Some(reason);
        }
        if let Phase::Away { wake, .. } = &state.phase {
            wake.cancel();
        }
    }

    /// Whether the session is away (dropped, waiting for a resume).
    pub fn is_away(&self) -> bool {
        matches!(self.state().phase, Phase::Away { .. })
    }
}

mod link;
#[cfg(test)]
mod tests;

pub use link::{LastWords, SessionLink};

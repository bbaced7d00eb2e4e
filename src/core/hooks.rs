//! What the core tells the app's backend about (docs/HOOKS.md): the life of
//! sessions and pairs, as [`HookEvent`]s handed to a [`HookSink`] at the
//! moment they happen, and the calls' outcomes ([`CallRecord`]s). The sink (the webhook sender) numbers, signs and
//! delivers them; the core only decides what happened, once, for every
//! door and node.

use super::call_report::CallResult;
use super::call_stats::CallRecord;
use super::command::{Role, Uid};
use super::ids::{DoorKind, SessionId};

/// The kinds of hook events. Their names are part of the webhook contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookKind {
    /// A session registered (uid, role).
    SessionRegistered,
    /// A registration completed a pair: both roles of the uid are held.
    PairStarted,
    /// A registered session's connection dropped; it waits for a resume.
    PeerAway,
    /// An away session was resumed (on any node).
    PeerBack,
    /// A pair broke: one of its sessions ended while the other held on.
    PairEnded,
    /// A registered session ended.
    SessionEnded,
    /// A call's outcome was decided: connected.
    CallConnected,
    /// A call's outcome was decided: failed.
    CallFailed,
    /// A connected call ended (`callreport` `closed`).
    CallEnded,
}

impl HookKind {
    /// Every kind, in the order of docs/HOOKS.md.
    pub const ALL: [HookKind; 9] = [
        HookKind::SessionRegistered,
        HookKind::PairStarted,
        HookKind::PeerAway,
        HookKind::PeerBack,
        HookKind::PairEnded,
        HookKind::SessionEnded,
        HookKind::CallConnected,
        HookKind::CallFailed,
        HookKind::CallEnded,
    ];

    /// The wire name, e.g. `pair.started`.
    pub const fn as_str(self) -> &'static str {
        match self {
            HookKind::SessionRegistered => "session.registered",
            HookKind::PairStarted => "pair.started",
            HookKind::PeerAway => "peer.away",
            HookKind::PeerBack => "peer.back",
            HookKind::PairEnded => "pair.ended",
            HookKind::SessionEnded => "session.ended",
            HookKind::CallConnected => "call.connected",
            HookKind::CallFailed => "call.failed",
            HookKind::CallEnded => "call.ended",
        }
    }

    /// The kind of hook a decided call makes.
    pub const fn of_call(result: CallResult) -> HookKind {
        match result {
            CallResult::Connected => HookKind::CallConnected,
            CallResult::Failed => HookKind::CallFailed,
            CallResult::Closed => HookKind::CallEnded,
        }
    }
}

/// One thing that happened to a session of `uid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookEvent {
    /// What happened.
    pub kind: HookKind,
    /// The uid.
    pub uid: Uid,
    /// The role of the session it happened to.
    pub role: Role,
    /// That session.
    pub session: SessionId,
    /// The other role's session, if one is held.
    pub peer_session: Option<SessionId>,
    /// The session's door (`None` when it has no connection: away, or
    /// reaped from a dead node).
    pub door: Option<DoorKind>,
    /// Why, for `pair.ended` and `session.ended` (the disconnect reason,
    /// as the `signalgate_disconnects_total` metric labels it).
    pub reason: Option<&'static str>,
}

/// Where the core hands its hook events. `emit` must not wait: it is
/// called on the paths that register, relay and end sessions.
pub trait HookSink: Send + Sync + std::fmt::Debug {
    /// Takes one event, in the order events happen for its uid.
    fn emit(&self, event: HookEvent);

    /// Takes one decided call (`call.connected`, `call.failed` or
    /// `call.ended`, by its result), in order with its uid's other events.
    fn emit_call(&self, record: &CallRecord);
}

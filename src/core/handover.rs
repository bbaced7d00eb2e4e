//! Handing a session from one node to another: a `resume` that reaches a
//! node other than the one holding the session asks that node for it. The
//! holding node's hub *exports* the session (validating the resume exactly
//! as a local one, then letting go of it without ending the pairing); the
//! resuming node's hub *adopts* it. The registry carries the request and
//! moves the binding; the core decides what is allowed.

use super::admin::{NodeAnswer, NodeQuery};
use super::call_report::CallReport;
use super::command::{Role, Uid};
use super::error::Rejection;
use super::event::Event;
use super::identity::Identity;
use super::ids::DoorKind;
use super::session::SessionId;

/// How long a resume waits, at most, for a session that is going away
/// this moment to have told its peer `peer_away` (turns of
/// [`ANNOUNCE_WAIT_TURN`]; on another node, asks again each turn).
pub const ANNOUNCE_WAIT_TURNS: u32 = 200;
/// One turn of that wait.
pub const ANNOUNCE_WAIT_TURN: std::time::Duration = std::time::Duration::from_millis(5);

/// A registered session, as one node hands it to another.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionExport {
    /// The session's id (kept across nodes).
    pub session_id: SessionId,
    /// Its uid.
    pub uid: Uid,
    /// Its role.
    pub role: Role,
    /// The last sequence number the session gave out.
    pub last_seq: u64,
    /// The `last_seq` the resuming client presented: what it has seen.
    pub acknowledged: u64,
    /// The events after `acknowledged`, with their sequence numbers.
    pub missed: Vec<(u64, Event)>,
    /// The highest request id the session has seen (re-sends are
    /// acknowledged, not applied, after a resume).
    pub highest_request_id: u64,
    /// Whether the session was away (its peer is told `peer_back`).
    pub was_away: bool,
}

/// Lets a shared registry ask this node's hub: for a session another node
/// wants to resume, an admin query, or to report a dead node's sessions.
pub trait SessionExporter: Send + Sync {
    /// Validates a resume of the session `token` belongs to and, if it may
    /// go ahead, lets go of the session and returns it. The session's
    /// binding is left for the registry to move.
    fn export(
        &self,
        token: &str,
        last_seq: u64,
        identity: Option<&Identity>,
    ) -> Result<SessionExport, Rejection>;

    /// Answers another node's admin query about this node's sessions.
    fn answer(&self, query: &NodeQuery) -> NodeAnswer;

    /// Joins a `callreport` that the app session of `uid` made on `door`
    /// on another node: its web session lives here.
    fn join_call(&self, uid: &Uid, door: DoorKind, report: CallReport);

    /// This node freed the binding of `session` (uid, role) of a dead
    /// node; `peer` held the other role. The hub reports the end.
    fn reaped(&self, uid: &Uid, role: Role, session: SessionId, peer: Option<SessionId>);
}

//! What the admin API asks of the core, protocol-neutral: presence, the
//! listing of sessions, kick, push and the node's activity. The hub answers
//! these for its own sessions (`hub/admin.rs`); a shared registry carries
//! them to the other nodes and brings their answers back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::call_stats::CallSummary;
use super::command::{Role, Uid};
use super::error::ErrorCode;
use super::ids::{DoorKind, SessionId};
use super::payload::JsonPayload;
use crate::sync::lock;

/// Most sessions one page of a listing may hold.
pub const MAX_PAGE: usize = 1000;
/// Sessions in a page when the caller names no limit.
pub const DEFAULT_PAGE: usize = 100;

/// Whether a registered session is connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Attached to a connection.
    Online,
    /// Its connection dropped; it waits for a resume.
    Away,
}

impl SessionState {
    /// The wire form: `online` or `away`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Online => "online",
            SessionState::Away => "away",
        }
    }

    /// Parses the wire form.
    pub fn parse(text: &str) -> Option<SessionState> {
        [SessionState::Online, SessionState::Away]
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

/// One registered session, as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session's id.
    pub session: SessionId,
    /// Its uid.
    pub uid: Uid,
    /// Its role.
    pub role: Role,
    /// The door of its connection (`None` while away).
    pub door: Option<DoorKind>,
    /// Online or away.
    pub state: SessionState,
    /// The node holding it.
    pub node: Arc<str>,
    /// When it entered its present state (registered, went away, resumed).
    pub since: SystemTime,
    /// The client's address (`None` while away, or when unknown).
    pub remote_addr: Option<SocketAddr>,
}

/// Where a listing starts: after this (uid, role), in the order of uid
/// then role name (`app` before `web`).
pub type Cursor = (Uid, Role);

/// Which sessions a listing wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionFilter {
    /// Uids starting with this (empty: every uid).
    pub uid_prefix: String,
    /// Only this exact uid (presence).
    pub exact: bool,
    /// Only sessions after this one.
    pub after: Option<Cursor>,
    /// At most this many.
    pub limit: usize,
}

impl SessionFilter {
    /// Whether `(uid, role)` belongs in the listing.
    pub fn admits(&self, uid: &Uid, role: Role) -> bool {
        let uid_matches = if self.exact {
            uid.as_str() == self.uid_prefix
        } else {
            uid.as_str().starts_with(&self.uid_prefix)
        };
        uid_matches
            && self.after.as_ref().is_none_or(|after| {
                (uid.as_str(), role.as_str()) > (after.0.as_str(), after.1.as_str())
            })
    }
}

/// What the pushed session did with a `notice`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// Queued for its connection.
    Delivered,
    /// The session is away: the notice waits for its resume.
    Held,
    /// No session holds that (uid, role) here.
    NoSession,
}

/// A question one node asks every node (itself included).
#[derive(Clone, Debug, PartialEq)]
pub enum NodeQuery {
    /// The node's registered sessions that pass the filter, in order.
    Sessions(SessionFilter),
    /// Close the sessions of `uid` (one role, or both) with `KICKED`.
    Kick {
        /// The uid.
        uid: Uid,
        /// One role, or both (`None`).
        role: Option<Role>,
        /// The operator's reason, sent to the client.
        reason: Arc<str>,
    },
    /// Send a `notice` carrying `data` to (uid, role).
    Push {
        /// The uid.
        uid: Uid,
        /// The role.
        role: Role,
        /// Any JSON.
        data: JsonPayload,
    },
    /// The node's activity.
    Stats,
    /// The calls the node decided within `window`.
    Calls {
        /// How far back.
        window: Duration,
    },
}

/// A node's answer to a [`NodeQuery`].
#[derive(Clone, Debug, PartialEq)]
pub enum NodeAnswer {
    /// Its sessions that pass the filter, in (uid, role) order.
    Sessions(Vec<SessionInfo>),
    /// How many sessions it kicked.
    Kicked(usize),
    /// What the push did there.
    Pushed(PushOutcome),
    /// Its activity.
    Stats(NodeStats),
    /// Its calls in the window.
    Calls(CallSummary),
}

/// One node's activity.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeStats {
    /// The node's name.
    pub node: Arc<str>,
    /// Connected sessions by door: WebSocket, gRPC, Socket.IO.
    pub sessions: DoorCounts,
    /// Sessions away, waiting for a resume.
    pub away: usize,
    /// Pairs whose two sessions are both on this node.
    pub pairs: usize,
    /// Relayed events per second, over the last second.
    pub relays_per_s: f64,
    /// `error` events sent per second over the last second, by code
    /// (codes with none left out).
    pub errors_per_s: Vec<(ErrorCode, f64)>,
    /// Seconds since the node started.
    pub uptime_s: u64,
}

/// Sessions by door.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DoorCounts {
    /// On the JSON WebSocket.
    pub ws: usize,
    /// On gRPC.
    pub grpc: usize,
    /// On Socket.IO.
    pub socketio: usize,
}

impl DoorCounts {
    /// Counts one session on `door`.
    pub fn count(&mut self, door: DoorKind) {
        match door {
            DoorKind::Ws => self.ws += 1,
            DoorKind::Grpc => self.grpc += 1,
            DoorKind::SocketIo => self.socketio += 1,
        }
    }

    /// The sum over doors.
    pub fn total(&self) -> usize {
        self.ws + self.grpc + self.socketio
    }
}

/// What every node answered; a node that did not answer in time is listed
/// with `None`.
pub type NodeAnswers = Vec<(Arc<str>, Option<NodeAnswer>)>;

/// A node's running counts of relays and errors, and their rates over the
/// last second (sampled by [`Activity::sample`] once a second).
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    relays: AtomicU64,
    errors: [AtomicU64; ErrorCode::ALL.len()],
    rates: std::sync::Mutex<Rates>,
}

#[derive(Debug, Clone, Default)]
struct Rates {
    at: Option<Instant>,
    relays: u64,
    errors: [u64; ErrorCode::ALL.len()],
    relays_per_s: f64,
    errors_per_s: Vec<(ErrorCode, f64)>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            started: Instant::now(),
            relays: AtomicU64::new(0),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            rates: std::sync::Mutex::new(Rates::default()),
        }
    }
}

impl Activity {
    /// Counts one relayed event.
    pub(crate) fn relayed(&self) {
        self.relays.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one `error` event sent.
    pub(crate) fn error_sent(&self, code: ErrorCode) {
        if let Some(index) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.errors[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Updates the rates from the counts since the previous sample.
    pub fn sample(&self) {
        let now = Instant::now();
        let relays = self.relays.load(Ordering::Relaxed);
        let errors: [u64; ErrorCode::ALL.len()] =
            std::array::from_fn(|i| self.errors[i].load(Ordering::Relaxed));
        let mut rates = lock(&self.rates);
        if let Some(at) = rates.at {
            let seconds = now.duration_since(at).as_secs_f64().max(1e-3);
            rates.relays_per_s = relays.saturating_sub(rates.relays) as f64 / seconds;
            rates.errors_per_s = ErrorCode::ALL
                .iter()
                .zip(errors.iter().zip(rates.errors.iter()))
                .filter_map(|(code, (now, then))| {
                    let sent = now.saturating_sub(*then);
                    (sent > 0).then(|| (*code, sent as f64 / seconds))
                })
                .collect();
        }
        rates.at = Some(now);
        rates.relays = relays;
        rates.errors = errors;
    }

    /// The rates of the last sample, and the seconds since the start.
    pub(crate) fn rates(&self) -> (f64, Vec<(ErrorCode, f64)>, u64) {
        let rates = lock(&self.rates);
        (
            rates.relays_per_s,
            rates.errors_per_s.clone(),
            self.started.elapsed().as_secs(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_admits_by_prefix_or_exact_uid_and_after_the_cursor() {
        let uid = |text: &str| Uid::new(text).expect("uid");
        let filter = SessionFilter {
            uid_prefix: "ab".into(),
            exact: false,
            after: Some((uid("abc"), Role::Web)),
            limit: 10,
        };
        assert!(!filter.admits(&uid("abc"), Role::Web));
        // `app` sorts before `web`: already listed.
        assert!(!filter.admits(&uid("abc"), Role::App));
        assert!(filter.admits(&uid("abd"), Role::Web));
        assert!(!filter.admits(&uid("abb"), Role::App));
        assert!(!filter.admits(&uid("xab"), Role::App));
        let exact = SessionFilter {
            uid_prefix: "ab".into(),
            exact: true,
            after: None,
            limit: 10,
        };
        assert!(exact.admits(&uid("ab"), Role::App));
        assert!(!exact.admits(&uid("abc"), Role::App));
    }

    #[test]
    fn rates_count_what_happened_since_the_previous_sample() {
        let activity = Activity::default();
        activity.sample();
        for _ in 0..10 {
            activity.relayed();
        }
        activity.error_sent(ErrorCode::NoPeer);
        std::thread::sleep(std::time::Duration::from_millis(50));
        activity.sample();
        let (relays, errors, _) = activity.rates();
        assert!(relays > 10.0, "{relays}");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, ErrorCode::NoPeer);
        activity.sample();
        assert_eq!(activity.rates().0, 0.0);
    }
}

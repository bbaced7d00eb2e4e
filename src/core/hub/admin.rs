//! The admin API's rules, once for every surface (HTTP JSON, gRPC) and for
//! the cluster: each node answers a [`NodeQuery`] about its own sessions
//! ([`Shared::answer_here`]); the node that was asked merges the answers of
//! every live node.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::info;

use super::super::admin::{
    DoorCounts, NodeAnswer, NodeAnswers, NodeQuery, NodeStats, PushOutcome, SessionFilter,
    SessionInfo, SessionState,
};
use super::super::call_stats::CallSummary;
use super::super::command::{Role, Uid};
use super::super::error::ErrorCode;
use super::super::event::Event;
use super::super::payload::JsonPayload;
use super::super::registry::RegistryError;
use super::super::session::{Phase, SessionHandle};
use super::{Hub, Shared};

/// A uid's two roles, as the admin API's presence shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presence {
    /// The uid.
    pub uid: Uid,
    /// Its `web` session, if any.
    pub web: Option<SessionInfo>,
    /// Its `app` session, if any.
    pub app: Option<SessionInfo>,
}

impl Presence {
    /// Whether both roles are held (online or away).
    pub fn paired(&self) -> bool {
        self.web.is_some() && self.app.is_some()
    }
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPage {
    /// The sessions, in (uid, role) order.
    pub sessions: Vec<SessionInfo>,
    /// Where the next page starts (`None`: this was the last).
    pub next_cursor: Option<(Uid, Role)>,
}

/// The activity of every node; a node that did not answer is listed by
/// name with `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterStats {
    /// Each node, this one first.
    pub nodes: Vec<(Arc<str>, Option<NodeStats>)>,
}

impl Shared {
    /// What `session`, bound here to (uid, role), looks like to the admin
    /// API (`None`: it is ending, or not attached yet).
    fn describe(&self, uid: &Uid, role: Role, handle: &SessionHandle) -> Option<SessionInfo> {
        let state = handle.state();
        let (door, remote_addr, session_state) = match (&state.phase, &state.attachment) {
            (Phase::Open, Some(attachment)) => (
                Some(attachment.door()),
                attachment.remote_addr(),
                SessionState::Online,
            ),
            (Phase::Away { .. }, _) => (None, None, SessionState::Away),
            _ => return None,
        };
        Some(SessionInfo {
            session: handle.id(),
            uid: uid.clone(),
            role,
            door,
            state: session_state,
            node: Arc::clone(&self.node),
            since: state.since,
            remote_addr,
        })
    }

    /// This node's sessions that pass `filter`, in order, at most its limit.
    fn sessions_here(&self, filter: &SessionFilter) -> Vec<SessionInfo> {
        let mut found = Vec::new();
        if filter.exact {
            if let Ok(uid) = Uid::new(&filter.uid_prefix) {
                for role in [Role::App, Role::Web] {
                    if let Some(handle) = self.registry.local_session(&uid, role)
                        && filter.admits(&uid, role)
                    {
                        found.extend(self.describe(&uid, role, &handle));
                    }
                }
            }
        } else {
            self.registry.each_local_session(&mut |uid, role, handle| {
                if filter.admits(uid, role) {
                    found.extend(self.describe(uid, role, handle));
                }
            });
        }
        sort_sessions(&mut found);
        found.truncate(filter.limit);
        found
    }

    /// Closes this node's sessions of `uid` (`role`, or both) with `KICKED`.
    fn kick_here(&self, uid: &Uid, role: Option<Role>, reason: &Arc<str>) -> usize {
        let roles = match role {
            Some(role) => vec![role],
            None => vec![Role::Web, Role::App],
        };
        let mut kicked = 0;
        for role in roles {
            if let Some(handle) = self.registry.local_session(uid, role)
                && handle.kill_with(ErrorCode::Kicked, Some(Arc::clone(reason)))
            {
                info!(session = %handle.id(), %uid, %role, reason = %reason, "kicked by an operator");
                kicked += 1;
            }
        }
        kicked
    }

    /// Queues a `notice` for this node's (uid, role).
    fn push_here(&self, uid: &Uid, role: Role, data: &JsonPayload) -> PushOutcome {
        let Some(handle) = self.registry.local_session(uid, role) else {
            return PushOutcome::NoSession;
        };
        let away = handle.is_away();
        match handle.deliver(Event::Notice(data.clone())) {
            Ok(()) if away => PushOutcome::Held,
            Ok(()) => PushOutcome::Delivered,
            Err(_) => PushOutcome::NoSession,
        }
    }

    /// This node's activity.
    fn stats_here(&self) -> NodeStats {
        let mut sessions = DoorCounts::default();
        self.registry.each_local_session(&mut |_, _, handle| {
            let state = handle.state();
            if let (Phase::Open, Some(attachment)) = (&state.phase, &state.attachment) {
                sessions.count(attachment.door());
            }
        });
        let (relays_per_s, errors_per_s, uptime_s) = self.activity.rates();
        NodeStats {
            node: Arc::clone(&self.node),
            sessions,
            away: self.counts.away(),
            pairs: self.registry.census().pairs,
            relays_per_s,
            errors_per_s,
            uptime_s,
        }
    }

    /// Answers `query` for this node's sessions.
    pub(super) fn answer_here(&self, query: &NodeQuery) -> NodeAnswer {
        match query {
            NodeQuery::Sessions(filter) => NodeAnswer::Sessions(self.sessions_here(filter)),
            NodeQuery::Kick { uid, role, reason } => {
                NodeAnswer::Kicked(self.kick_here(uid, *role, reason))
            }
            NodeQuery::Push { uid, role, data } => {
                NodeAnswer::Pushed(self.push_here(uid, *role, data))
            }
            NodeQuery::Stats => NodeAnswer::Stats(self.stats_here()),
            NodeQuery::Calls { window } => NodeAnswer::Calls(self.calls_here(*window)),
        }
    }
}

/// (uid, role name) order: the order of listings and cursors.
fn sort_sessions(sessions: &mut [SessionInfo]) {
    sessions
        .sort_by(|a, b| (a.uid.as_str(), a.role.as_str()).cmp(&(b.uid.as_str(), b.role.as_str())));
}

impl Hub {
    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.shared.node
    }

    /// Asks this node and every other live node.
    async fn ask_everyone(&self, query: &NodeQuery) -> Result<NodeAnswers, RegistryError> {
        let mine = self.shared.answer_here(query);
        let mut answers = match &self.shared.link {
            Some(link) => link.ask_other_nodes(query).await?,
            None => Vec::new(),
        };
        answers.insert(0, (Arc::clone(&self.shared.node), Some(mine)));
        Ok(answers)
    }

    /// Who holds each role of `uid`, on any node.
    pub async fn presence(&self, uid: Uid) -> Result<Presence, RegistryError> {
        let filter = SessionFilter {
            uid_prefix: uid.as_str().to_owned(),
            exact: true,
            after: None,
            limit: 2,
        };
        let mut presence = Presence {
            uid,
            web: None,
            app: None,
        };
        for (_, answer) in self.ask_everyone(&NodeQuery::Sessions(filter)).await? {
            let Some(NodeAnswer::Sessions(sessions)) = answer else {
                continue;
            };
            for info in sessions {
                let slot = match info.role {
                    Role::Web => &mut presence.web,
                    Role::App => &mut presence.app,
                };
                // Mid-replacement two nodes may both answer: the newest wins.
                if slot.as_ref().is_none_or(|held| held.since < info.since) {
                    *slot = Some(info);
                }
            }
        }
        Ok(presence)
    }

    /// One page of the registered sessions of every node, in (uid, role)
    /// order; following `next_cursor` visits each session once.
    pub async fn list_sessions(&self, filter: SessionFilter) -> Result<SessionPage, RegistryError> {
        let limit = filter.limit;
        let mut sessions = Vec::new();
        let mut some_node_had_more = false;
        for (_, answer) in self.ask_everyone(&NodeQuery::Sessions(filter)).await? {
            if let Some(NodeAnswer::Sessions(found)) = answer {
                some_node_had_more |= found.len() >= limit;
                sessions.extend(found);
            }
        }
        sort_sessions(&mut sessions);
        let more = some_node_had_more || sessions.len() > limit;
        sessions.truncate(limit);
        let next_cursor = if more {
            sessions.last().map(|last| (last.uid.clone(), last.role))
        } else {
            None
        };
        Ok(SessionPage {
            sessions,
            next_cursor,
        })
    }

    /// Closes the sessions of `uid` (one role, or both) on every node with
    /// `KICKED` and `reason`; how many there were.
    pub async fn kick(
        &self,
        uid: Uid,
        role: Option<Role>,
        reason: Arc<str>,
    ) -> Result<usize, RegistryError> {
        let query = NodeQuery::Kick { uid, role, reason };
        Ok(self
            .ask_everyone(&query)
            .await?
            .into_iter()
            .filter_map(|(_, answer)| match answer {
                Some(NodeAnswer::Kicked(count)) => Some(count),
                _ => None,
            })
            .sum())
    }

    /// Sends a `notice` carrying `data` to (uid, role), wherever it is.
    pub async fn push(
        &self,
        uid: Uid,
        role: Role,
        data: JsonPayload,
    ) -> Result<PushOutcome, RegistryError> {
        let query = NodeQuery::Push { uid, role, data };
        let mut outcome = PushOutcome::NoSession;
        for (_, answer) in self.ask_everyone(&query).await? {
            match answer {
                Some(NodeAnswer::Pushed(PushOutcome::Delivered)) => {
                    return Ok(PushOutcome::Delivered);
                }
                Some(NodeAnswer::Pushed(PushOutcome::Held)) => outcome = PushOutcome::Held,
                _ => {}
            }
        }
        Ok(outcome)
    }

    /// The activity of every live node.
    pub async fn stats(&self) -> Result<ClusterStats, RegistryError> {
        let nodes = self
            .ask_everyone(&NodeQuery::Stats)
            .await?
            .into_iter()
            .map(|(node, answer)| match answer {
                Some(NodeAnswer::Stats(stats)) => (node, Some(stats)),
                _ => (node, None),
            })
            .collect();
        Ok(ClusterStats { nodes })
    }

    /// The calls every node decided within `window`, merged, and the nodes
    /// that did not answer in time.
    pub async fn calls(
        &self,
        window: Duration,
    ) -> Result<(CallSummary, Vec<Arc<str>>), RegistryError> {
        let mut merged = CallSummary::default();
        let mut silent = Vec::new();
        for (node, answer) in self.ask_everyone(&NodeQuery::Calls { window }).await? {
            match answer {
                Some(NodeAnswer::Calls(summary)) => merged.merge(summary),
                _ => silent.push(node),
            }
        }
        Ok((merged, silent))
    }

    /// Samples the relay and error rates once a second until `stop`, and
    /// records alone the calls whose second report is overdue.
    pub async fn sample_activity(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.shared.activity.sample();
                    self.shared.expire_calls();
                }
                () = stop.cancelled() => return,
            }
        }
    }
}

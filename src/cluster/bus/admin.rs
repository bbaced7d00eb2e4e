//! The admin API's questions between nodes: a `query` frame asks one node
//! about its own sessions ([`NodeQuery`]); its `reply` carries the
//! [`NodeAnswer`]. Sessions and stats travel in the admin API's own JSON
//! shapes (`crate::protocol::admin`).

use serde::{Deserialize, Serialize};

use super::{BusError, parse_role};
use crate::core::admin::{NodeAnswer, NodeQuery, PushOutcome, SessionFilter};
use crate::core::{JsonPayload, Uid};
use crate::protocol::admin::{NodeStatsJson, SessionJson};
use crate::protocol::admin_calls::NodeCallsJson;

/// A [`NodeQuery`] on the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "q", rename_all = "snake_case")]
pub(crate) enum QueryWire {
    Sessions {
        uid_prefix: String,
        exact: bool,
        after: Option<(String, String)>,
        limit: usize,
    },
    Kick {
        uid: String,
        role: Option<String>,
        reason: String,
    },
    /// `data` is the JSON text (a raw value cannot sit in a tagged enum:
    /// serde buffers its fields).
    Push {
        uid: String,
        role: String,
        data: String,
    },
    Stats,
    /// The window in ms.
    Calls {
        window_ms: u64,
    },
}

/// A [`NodeAnswer`] on the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "a", rename_all = "snake_case")]
pub(crate) enum AnswerWire {
    Sessions { sessions: Vec<SessionJson> },
    Kicked { count: usize },
    Pushed { outcome: String },
    Stats { stats: NodeStatsJson },
    Calls { calls: NodeCallsJson },
}

fn malformed(error: impl std::fmt::Display) -> BusError {
    BusError::Malformed(error.to_string())
}

fn uid(text: &str) -> Result<Uid, BusError> {
    Uid::new(text).map_err(malformed)
}

impl QueryWire {
    pub(crate) fn encode(query: &NodeQuery) -> QueryWire {
        match query {
            NodeQuery::Sessions(filter) => QueryWire::Sessions {
                uid_prefix: filter.uid_prefix.clone(),
                exact: filter.exact,
                after: filter
                    .after
                    .as_ref()
                    .map(|(uid, role)| (uid.as_str().to_owned(), role.as_str().to_owned())),
                limit: filter.limit,
            },
            NodeQuery::Kick { uid, role, reason } => QueryWire::Kick {
                uid: uid.as_str().to_owned(),
                role: role.map(|role| role.as_str().to_owned()),
                reason: reason.to_string(),
            },
            NodeQuery::Push { uid, role, data } => QueryWire::Push {
                uid: uid.as_str().to_owned(),
                role: role.as_str().to_owned(),
                data: data.as_str().to_owned(),
            },
            NodeQuery::Stats => QueryWire::Stats,
            NodeQuery::Calls { window } => QueryWire::Calls {
                window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
            },
        }
    }

    pub(crate) fn decode(self) -> Result<NodeQuery, BusError> {
        Ok(match self {
            QueryWire::Sessions {
                uid_prefix,
                exact,
                after,
                limit,
            } => NodeQuery::Sessions(SessionFilter {
                uid_prefix,
                exact,
                after: match after {
                    Some((after_uid, role)) => Some((uid(&after_uid)?, parse_role(&role)?)),
                    None => None,
                },
                limit,
            }),
            QueryWire::Kick {
                uid: kicked,
                role,
                reason,
            } => NodeQuery::Kick {
                uid: uid(&kicked)?,
                role: role.as_deref().map(parse_role).transpose()?,
                reason: reason.into(),
            },
            QueryWire::Push {
                uid: pushed,
                role,
                data,
            } => NodeQuery::Push {
                uid: uid(&pushed)?,
                role: parse_role(&role)?,
                data: JsonPayload::from_text(data).map_err(malformed)?,
            },
            QueryWire::Stats => NodeQuery::Stats,
            QueryWire::Calls { window_ms } => NodeQuery::Calls {
                window: std::time::Duration::from_millis(window_ms),
            },
        })
    }
}

impl AnswerWire {
    pub(crate) fn encode(answer: &NodeAnswer) -> AnswerWire {
        match answer {
            NodeAnswer::Sessions(sessions) => AnswerWire::Sessions {
                sessions: sessions.iter().map(SessionJson::from).collect(),
            },
            NodeAnswer::Kicked(count) => AnswerWire::Kicked { count: *count },
            NodeAnswer::Pushed(outcome) => AnswerWire::Pushed {
                outcome: match outcome {
                    PushOutcome::Delivered => "delivered",
                    PushOutcome::Held => "held",
                    PushOutcome::NoSession => "no_session",
                }
                .to_owned(),
            },
            NodeAnswer::Stats(stats) => AnswerWire::Stats {
                stats: NodeStatsJson::from(stats),
            },
            NodeAnswer::Calls(summary) => AnswerWire::Calls {
                calls: NodeCallsJson::from(summary),
            },
        }
    }

    pub(crate) fn decode(self) -> Result<NodeAnswer, BusError> {
        Ok(match self {
            AnswerWire::Sessions { sessions } => NodeAnswer::Sessions(
                sessions
                    .into_iter()
                    .map(|json| json.try_into().map_err(malformed))
                    .collect::<Result<_, _>>()?,
            ),
            AnswerWire::Kicked { count } => NodeAnswer::Kicked(count),
            AnswerWire::Pushed { outcome } => NodeAnswer::Pushed(match outcome.as_str() {
                "delivered" => PushOutcome::Delivered,
                "held" => PushOutcome::Held,
                "no_session" => PushOutcome::NoSession,
                other => {
                    return Err(BusError::Malformed(format!("push outcome {other}")));
                }
            }),
            AnswerWire::Stats { stats } => NodeAnswer::Stats(stats.try_into().map_err(malformed)?),
            AnswerWire::Calls { calls } => NodeAnswer::Calls(calls.try_into().map_err(malformed)?),
        })
    }
}

//! What nodes say to each other over Redis pub/sub: typed [`Frame`]s,
//! published on the receiving node's channel as one flat JSON object.
//!
//! The wire stays flat (a `t` naming the kind, then the fields that kind
//! uses) because the Lua scripts publish `deliver` (byebye) and `kill`
//! frames themselves with `cjson`, and because serde's tagged enums buffer
//! their fields, which a relayed payload kept as raw JSON text cannot come
//! out of. So [`Wire`] is the one flat shape, and [`Frame`] the typed one
//! every node works with: a frame is read into it once on arrival (a
//! malformed one is refused there) and written from it once on departure.

mod admin;
mod calls;

use admin::{AnswerWire, QueryWire};
use calls::CallWire;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::core::admin::{NodeAnswer, NodeQuery};
use crate::core::{
    CallReport, DeliveryError, DoorKind, ErrorCode, Event, Identity, Rejection, Role,
    SessionExport, SessionId, Uid,
};
use crate::protocol::envelope::{self, event_data, event_request_id};

/// One message between nodes.
#[derive(Debug)]
pub(crate) enum Frame {
    /// An event for one of the receiving node's sessions (name and data in
    /// the JSON envelope's shape); with an asker, the outcome goes back in
    /// a [`Frame::Reply`].
    Deliver {
        to: Target,
        event: String,
        data: Option<Box<RawValue>>,
        asker: Option<Asker>,
    },
    /// Close one of the receiving node's sessions.
    Kill { to: Target, code: ErrorCode },
    /// Another node resumes a session this one holds: hand it over.
    Take {
        resume_token: String,
        last_seq: u64,
        identity: Option<Identity>,
        asker: Asker,
    },
    /// The node that took a session bound it here (`bound`) or lost it to
    /// a newer registration: forward or refuse what was held for it.
    Adopted { session: SessionId, bound: bool },
    /// The admin API asks the receiving node about its own sessions.
    Query { query: NodeQuery, asker: Asker },
    /// The answer to a frame that named an asker.
    Reply { token: u64, answer: Answer },
    /// A `callreport` from the peer of `to` (an app session on the sending
    /// node), to be joined here where the web session `to` lives.
    Call {
        to: Target,
        door: DoorKind,
        report: CallReport,
    },
    /// A node's check of its own subscription on a Redis Cluster (see
    /// `Inner::prober`): published to its own channel, with a token unique
    /// to the probe, so that a probe heard twice is recognised.
    Probe { token: u64 },
}

/// One session of the receiving node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub uid: Uid,
    pub role: Role,
    pub session: SessionId,
}

/// The node that wants an answer, and its correlation token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Asker {
    pub node: String,
    pub token: u64,
}

/// What a [`Frame::Reply`] says.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The outcome of a `deliver`.
    Delivered(Result<(), DeliveryError>),
    /// A `take` went through: the session, handed over.
    Exported(ExportWire),
    /// A `take` was refused.
    Refused(Rejection),
    /// The answer to a `query`.
    Queried(NodeAnswer),
}

impl Frame {
    /// The kind, as the wire's `t` names it (also the metrics label).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Frame::Deliver { .. } => "deliver",
            Frame::Kill { .. } => "kill",
            Frame::Take { .. } => "take",
            Frame::Adopted { .. } => "adopted",
            Frame::Query { .. } => "query",
            Frame::Reply { .. } => "reply",
            Frame::Call { .. } => "call",
            Frame::Probe { .. } => "probe",
        }
    }

    /// The node that wants this frame's outcome, and its token: unique to
    /// the frame, so a copy of it is recognised.
    pub(crate) fn asker(&self) -> Option<&Asker> {
        match self {
            Frame::Deliver { asker, .. } => asker.as_ref(),
            Frame::Take { asker, .. } | Frame::Query { asker, .. } => Some(asker),
            Frame::Kill { .. }
            | Frame::Adopted { .. }
            | Frame::Reply { .. }
            | Frame::Call { .. }
            | Frame::Probe { .. } => None,
        }
    }

    /// The session a `deliver` or `kill` is for.
    pub(crate) fn target(&self) -> Option<&Target> {
        match self {
            Frame::Deliver { to, .. } | Frame::Kill { to, .. } => Some(to),
            Frame::Take { .. }
            | Frame::Adopted { .. }
            | Frame::Query { .. }
            | Frame::Reply { .. }
            | Frame::Call { .. }
            | Frame::Probe { .. } => None,
        }
    }

    /// The JSON text published for this frame.
    pub(crate) fn encode(self) -> Result<String, BusError> {
        serde_json::to_string(&Wire::from(self)).map_err(|e| BusError::Malformed(e.to_string()))
    }

    /// A frame from the JSON text another node (or a script) published.
    pub(crate) fn decode(payload: &[u8]) -> Result<Frame, BusError> {
        let wire: Wire =
            serde_json::from_slice(payload).map_err(|e| BusError::Malformed(e.to_string()))?;
        Frame::try_from(wire)
    }
}

/// The flat wire shape of every frame: `t`, then the fields its kind uses.
#[derive(Debug, Serialize, Deserialize, Default)]
struct Wire {
    t: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply_node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<u64>,
    /// `reply`: `delivered`, `slow_consumer`, `gone`, `unreachable`,
    /// `exported` or `refused`; `adopted`: `bound` or `lost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resume_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role_limit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    export: Option<ExportWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    query: Option<QueryWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    answer: Option<AnswerWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    call: Option<CallWire>,
}

impl From<Frame> for Wire {
    fn from(frame: Frame) -> Wire {
        let kind = frame.kind().to_owned();
        let target = |to: Target| Wire {
            uid: Some(to.uid.as_str().to_owned()),
            role: Some(to.role.as_str().to_owned()),
            session: Some(to.session.to_string()),
            ..Wire::default()
        };
        let asked = |wire: Wire, asker: Option<Asker>| match asker {
            Some(Asker { node, token }) => Wire {
                reply_node: Some(node),
                token: Some(token),
                ..wire
            },
            None => wire,
        };
        let wire = match frame {
            Frame::Deliver {
                to,
                event,
                data,
                asker,
            } => asked(
                Wire {
                    event: Some(event),
                    data,
                    ..target(to)
                },
                asker,
            ),
            Frame::Kill { to, code } => Wire {
                code: Some(code.as_str().to_owned()),
                ..target(to)
            },
            Frame::Take {
                resume_token,
                last_seq,
                identity,
                asker,
            } => asked(
                Wire {
                    resume_token: Some(resume_token),
                    last_seq: Some(last_seq),
                    role_limit: identity
                        .as_ref()
                        .and_then(|identity| identity.role)
                        .map(|role| role.as_str().to_owned()),
                    subject: identity.map(|identity| identity.subject),
                    ..Wire::default()
                },
                Some(asker),
            ),
            Frame::Query { query, asker } => asked(
                Wire {
                    query: Some(QueryWire::encode(&query)),
                    ..Wire::default()
                },
                Some(asker),
            ),
            Frame::Call { to, door, report } => Wire {
                call: Some(CallWire::encode(door, &report)),
                ..target(to)
            },
            Frame::Probe { token } => Wire {
                token: Some(token),
                ..Wire::default()
            },
            Frame::Adopted { session, bound } => Wire {
                session: Some(session.to_string()),
                outcome: Some(if bound { "bound" } else { "lost" }.to_owned()),
                ..Wire::default()
            },
            Frame::Reply { token, answer } => {
                let wire = Wire {
                    token: Some(token),
                    ..Wire::default()
                };
                match answer {
                    Answer::Delivered(outcome) => Wire {
                        outcome: Some(encode_outcome(outcome).to_owned()),
                        ..wire
                    },
                    Answer::Exported(export) => Wire {
                        outcome: Some("exported".to_owned()),
                        export: Some(export),
                        ..wire
                    },
                    Answer::Refused(rejection) => Wire {
                        outcome: Some("refused".to_owned()),
                        code: Some(rejection.code.as_str().to_owned()),
                        message: Some(rejection.message.into_owned()),
                        ..wire
                    },
                    Answer::Queried(answer) => Wire {
                        outcome: Some("queried".to_owned()),
                        answer: Some(AnswerWire::encode(&answer)),
                        ..wire
                    },
                }
            }
        };
        Wire { t: kind, ..wire }
    }
}

impl TryFrom<Wire> for Frame {
    type Error = BusError;

    fn try_from(wire: Wire) -> Result<Frame, BusError> {
        let missing = |field: &str| BusError::Malformed(format!("{} without {field}", wire.t));
        let target = || -> Result<Target, BusError> {
            let uid = wire.uid.as_deref().ok_or_else(|| missing("uid"))?;
            let session = wire.session.as_deref().ok_or_else(|| missing("session"))?;
            Ok(Target {
                uid: Uid::new(uid).map_err(|e| BusError::Malformed(e.to_string()))?,
                role: parse_role(wire.role.as_deref().ok_or_else(|| missing("role"))?)?,
                session: SessionId::parse(session)
                    .ok_or_else(|| BusError::Malformed(format!("session {session}")))?,
            })
        };
        let asker = || match (&wire.reply_node, wire.token) {
            (Some(node), Some(token)) => Some(Asker {
                node: node.clone(),
                token,
            }),
            _ => None,
        };
        Ok(match wire.t.as_str() {
            "deliver" => Frame::Deliver {
                to: target()?,
                asker: asker(),
                event: wire.event.ok_or_else(|| missing("event"))?,
                data: wire.data,
            },
            "kill" => Frame::Kill {
                to: target()?,
                // A frame without a code is a replacement (why a session
                // is killed from another node); an unknown code is an error.
                code: match wire.code.as_deref() {
                    None => ErrorCode::Replaced,
                    Some(code) => parse_code(code)?,
                },
            },
            "take" => Frame::Take {
                asker: asker().ok_or_else(|| missing("reply_node and token"))?,
                identity: match wire.subject {
                    Some(subject) => Some(Identity {
                        subject,
                        role: wire.role_limit.as_deref().map(parse_role).transpose()?,
                    }),
                    None => None,
                },
                resume_token: wire.resume_token.unwrap_or_default(),
                last_seq: wire.last_seq.unwrap_or(0),
            },
            "adopted" => Frame::Adopted {
                session: wire
                    .session
                    .as_deref()
                    .and_then(SessionId::parse)
                    .ok_or_else(|| missing("session"))?,
                bound: match wire.outcome.as_deref() {
                    Some("bound") => true,
                    Some("lost") => false,
                    other => return Err(BusError::Malformed(format!("adopted outcome {other:?}"))),
                },
            },
            "call" => {
                let (door, report) = wire.call.clone().ok_or_else(|| missing("call"))?.decode()?;
                Frame::Call {
                    to: target()?,
                    door,
                    report,
                }
            }
            "probe" => Frame::Probe {
                token: wire.token.ok_or_else(|| missing("token"))?,
            },
            "query" => Frame::Query {
                asker: asker().ok_or_else(|| missing("reply_node and token"))?,
                query: wire.query.ok_or_else(|| missing("query"))?.decode()?,
            },
            "reply" => Frame::Reply {
                token: wire.token.ok_or_else(|| missing("token"))?,
                answer: match (wire.outcome.as_deref(), wire.export, wire.answer) {
                    (Some("queried"), _, Some(answer)) => Answer::Queried(answer.decode()?),
                    (Some("exported"), Some(export), _) => Answer::Exported(export),
                    (Some("refused"), _, _) => Answer::Refused(Rejection::new(
                        parse_code(wire.code.as_deref().ok_or_else(|| missing("code"))?)?,
                        wire.message.unwrap_or_else(|| "resume refused".to_owned()),
                    )),
                    (Some(outcome), _, _) => Answer::Delivered(decode_outcome(outcome)?),
                    (None, _, _) => return Err(missing("outcome")),
                },
            },
            other => return Err(BusError::Malformed(format!("unknown frame kind {other}"))),
        })
    }
}

/// A session handed to another node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ExportWire {
    session: String,
    uid: String,
    role: String,
    last_seq: u64,
    acknowledged: u64,
    highest_request_id: u64,
    was_away: bool,
    missed: Vec<EventWire>,
}

/// One retained event of a handed-over session.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct EventWire {
    seq: u64,
    event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
}

/// The wire form of a handed-over session.
pub(crate) fn encode_export(export: &SessionExport) -> Result<ExportWire, BusError> {
    let mut missed = Vec::with_capacity(export.missed.len());
    for (seq, event) in &export.missed {
        let data = match event_data(event) {
            Some(data) => Some(
                serde_json::value::to_raw_value(&data)
                    .map_err(|e| BusError::Malformed(e.to_string()))?,
            ),
            None => None,
        };
        missed.push(EventWire {
            seq: *seq,
            event: event.name().to_owned(),
            data,
            id: event_request_id(event),
        });
    }
    Ok(ExportWire {
        session: export.session_id.to_string(),
        uid: export.uid.as_str().to_owned(),
        role: export.role.as_str().to_owned(),
        last_seq: export.last_seq,
        acknowledged: export.acknowledged,
        highest_request_id: export.highest_request_id,
        was_away: export.was_away,
        missed,
    })
}

fn parse_role(text: &str) -> Result<Role, BusError> {
    text.parse()
        .map_err(|unknown| BusError::Malformed(format!("{unknown}")))
}

/// A kept event of a handed-over session, from its wire form (the
/// envelope's own decoding, beside the encoding it inverts).
fn decode_retained(wire: &EventWire) -> Result<Event, BusError> {
    envelope::decode_event(&wire.event, wire.data.as_deref(), wire.id)
        .map_err(|error| BusError::Malformed(error.to_string()))
}

/// A handed-over session from its wire form.
pub(crate) fn decode_export(wire: &ExportWire) -> Result<SessionExport, BusError> {
    let mut missed = Vec::with_capacity(wire.missed.len());
    for event in &wire.missed {
        missed.push((event.seq, decode_retained(event)?));
    }
    Ok(SessionExport {
        session_id: SessionId::parse(&wire.session)
            .ok_or_else(|| BusError::Malformed(format!("session {}", wire.session)))?,
        uid: Uid::new(&wire.uid).map_err(|e| BusError::Malformed(e.to_string()))?,
        role: parse_role(&wire.role)?,
        last_seq: wire.last_seq,
        acknowledged: wire.acknowledged,
        missed,
        highest_request_id: wire.highest_request_id,
        was_away: wire.was_away,
    })
}

/// Why an event cannot cross to another node.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BusError {
    /// Only events addressed to a peer cross nodes.
    #[error("the event {0} is never sent to a peer")]
    NotPeerEvent(&'static str),
    /// The frame is not one this node understands.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// The name and data of an event that goes to a peer.
pub(crate) fn encode_event(event: &Event) -> Result<(String, Option<Box<RawValue>>), BusError> {
    match event {
        Event::Relayed(_) | Event::ByeBye | Event::SyncFrom | Event::PeerAway | Event::PeerBack => {
        }
        other => return Err(BusError::NotPeerEvent(other.name())),
    }
    let data = match event_data(event) {
        Some(data) => Some(
            serde_json::value::to_raw_value(&data)
                .map_err(|e| BusError::Malformed(e.to_string()))?,
        ),
        None => None,
    };
    Ok((event.name().to_owned(), data))
}

/// The event a `deliver` frame carries: one of those addressed to a peer.
pub(crate) fn decode_event(name: &str, data: Option<&RawValue>) -> Result<Event, BusError> {
    let event = envelope::decode_event(name, data, None)
        .map_err(|error| BusError::Malformed(error.to_string()))?;
    match event {
        Event::Relayed(_) | Event::ByeBye | Event::SyncFrom | Event::PeerAway | Event::PeerBack => {
            Ok(event)
        }
        Event::Welcome { .. }
        | Event::Resumed { .. }
        | Event::Registered { .. }
        | Event::IceServers(_)
        | Event::IpAddrs(_)
        | Event::Notice(_)
        | Event::Reconnect { .. }
        | Event::Ack { .. }
        | Event::Error { .. } => Err(BusError::Malformed(format!("{name} is not sent to a peer"))),
    }
}

/// The wire form of a delivery outcome.
fn encode_outcome(outcome: Result<(), DeliveryError>) -> &'static str {
    match outcome {
        Ok(()) => "delivered",
        Err(DeliveryError::SlowConsumer) => "slow_consumer",
        Err(DeliveryError::Gone) => "gone",
        Err(DeliveryError::Unreachable) => "unreachable",
    }
}

/// A delivery outcome from its wire form; an unknown one is an error (the
/// frame is dropped and counted), never taken for `unreachable`.
fn decode_outcome(text: &str) -> Result<Result<(), DeliveryError>, BusError> {
    Ok(match text {
        "delivered" => Ok(()),
        "slow_consumer" => Err(DeliveryError::SlowConsumer),
        "gone" => Err(DeliveryError::Gone),
        "unreachable" => Err(DeliveryError::Unreachable),
        other => return Err(BusError::Malformed(format!("delivery outcome {other}"))),
    })
}

/// An error code from its wire form.
fn parse_code(text: &str) -> Result<ErrorCode, BusError> {
    ErrorCode::parse(text).ok_or_else(|| BusError::Malformed(format!("error code {text}")))
}

#[cfg(test)]
mod tests;

//! What nodes say to each other over Redis pub/sub: one flat JSON frame per
//! message, published on the receiving node's channel.
//!
//! Three kinds: `deliver` (an event for one of the node's sessions, with an
//! optional reply address), `kill` (close one of its sessions, e.g.
//! `REPLACED`) and `reply` (the outcome of a `deliver` that asked for one).
//! The Lua scripts publish `deliver` (byebye) and `kill` frames themselves,
//! so the shape is kept flat and simple enough to build with `cjson`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use std::borrow::Cow;
use std::net::Ipv4Addr;

use crate::core::{Command, DeliveryError, ErrorCode, Event, Role, SessionExport, SessionId, Uid};
use crate::protocol::envelope::{Data, decode_command, event_data, event_request_id};

/// One message between nodes.
#[derive(Debug, Serialize, Deserialize, Default)]
pub(crate) struct Frame {
    /// `deliver`, `kill` or `reply`.
    pub t: String,
    /// Target uid (`deliver`, `kill`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Target role, `web` or `app` (`deliver`, `kill`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Target session id, 16 hex digits (`deliver`, `kill`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Event name as the JSON doors spell it (`deliver`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Event data in the JSON doors' shape (`deliver`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<RawValue>>,
    /// Error code (`kill`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Node to send the reply to (`deliver`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_node: Option<String>,
    /// Correlates a `reply` with its `deliver`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<u64>,
    /// `delivered`, `slow_consumer` or `gone`; for a `take`: `exported`
    /// or `refused` (`reply`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The resume token a `take` presents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_token: Option<String>,
    /// The `last_seq` a `take` presents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    /// The resuming connection's authenticated subject (`take`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The role its token restricts it to (`take`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_limit: Option<String>,
    /// Why a `take` was refused (with `code`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The handed-over session (a `reply` to a `take`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportWire>,
}

/// A session handed to another node.
#[derive(Debug, Serialize, Deserialize)]
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
#[derive(Debug, Serialize, Deserialize)]
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

fn data_as<T: serde::de::DeserializeOwned>(data: Option<&RawValue>) -> Result<T, BusError> {
    let text = data.map_or("null", RawValue::get);
    serde_json::from_str(text).map_err(|e| BusError::Malformed(e.to_string()))
}

/// Any event a session may have retained, from its wire form.
fn decode_retained(wire: &EventWire) -> Result<Event, BusError> {
    #[derive(Deserialize)]
    struct Registered {
        uid: String,
        role: String,
        #[serde(rename = "peerPresent")]
        peer_present: bool,
    }
    #[derive(Deserialize)]
    struct Error {
        code: String,
        message: String,
    }
    let data = wire.data.as_deref();
    Ok(match wire.event.as_str() {
        "registered" => {
            let registered: Registered = data_as(data)?;
            Event::Registered {
                uid: Uid::new(&registered.uid).map_err(|e| BusError::Malformed(e.to_string()))?,
                role: parse_role(&registered.role)?,
                peer_present: registered.peer_present,
            }
        }
        "ipaddr" => {
            let addresses: Vec<Ipv4Addr> = data_as(data)?;
            Event::IpAddrs(addresses.into())
        }
        "ack" => Event::Ack {
            id: wire
                .id
                .ok_or_else(|| BusError::Malformed("ack without id".into()))?,
        },
        "error" => {
            let error: Error = data_as(data)?;
            Event::Error {
                code: ErrorCode::parse(&error.code)
                    .ok_or_else(|| BusError::Malformed(format!("code {}", error.code)))?,
                message: Cow::Owned(error.message),
                id: wire.id,
            }
        }
        name => decode_event(name, data)?,
    })
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

/// The event a `deliver` frame carries.
pub(crate) fn decode_event(name: &str, data: Option<&RawValue>) -> Result<Event, BusError> {
    Ok(match name {
        "byebye" => Event::ByeBye,
        "syncfrom" => Event::SyncFrom,
        "peer_away" => Event::PeerAway,
        "peer_back" => Event::PeerBack,
        relayed => match decode_command(relayed, data.map(Data::Raw)) {
            Ok(Command::Relay(relay)) => Event::Relayed(relay),
            Ok(_) => return Err(BusError::Malformed(format!("{relayed} is not relayed"))),
            Err(rejection) => return Err(BusError::Malformed(rejection.to_string())),
        },
    })
}

/// The wire form of a delivery outcome.
pub(crate) fn encode_outcome(outcome: Result<(), DeliveryError>) -> &'static str {
    match outcome {
        Ok(()) => "delivered",
        Err(DeliveryError::SlowConsumer) => "slow_consumer",
        Err(DeliveryError::Gone) => "gone",
        Err(DeliveryError::Unreachable) => "unreachable",
    }
}

/// A delivery outcome from its wire form.
pub(crate) fn decode_outcome(text: &str) -> Result<(), DeliveryError> {
    match text {
        "delivered" => Ok(()),
        "slow_consumer" => Err(DeliveryError::SlowConsumer),
        "gone" => Err(DeliveryError::Gone),
        _ => Err(DeliveryError::Unreachable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{JsonPayload, Relay};

    #[test]
    fn peer_events_round_trip() {
        let payload = JsonPayload::from_value(&serde_json::json!({"sdp": "v=0", "n": [1, 2.5]}))
            .expect("payload");
        for event in [
            Event::ByeBye,
            Event::SyncFrom,
            Event::PeerAway,
            Event::PeerBack,
            Event::Relayed(Relay::Message(payload.clone())),
            Event::Relayed(Relay::SyncTo(payload)),
            Event::Relayed(Relay::CtrlSendSpeed(65536)),
        ] {
            let (name, data) = encode_event(&event).expect("encodes");
            let frame = Frame {
                t: "deliver".into(),
                event: Some(name),
                data,
                ..Frame::default()
            };
            let text = serde_json::to_string(&frame).expect("serializes");
            let back: Frame = serde_json::from_str(&text).expect("parses");
            let decoded = decode_event(back.event.as_deref().unwrap_or(""), back.data.as_deref())
                .expect("decodes");
            assert_eq!(decoded, event);
        }
    }

    #[test]
    fn handed_over_sessions_round_trip() {
        let payload = JsonPayload::from_value(&serde_json::json!({"candidate": "a", "n": 1.5}))
            .expect("payload");
        let uid = Uid::new("ünï").expect("uid");
        let export = SessionExport {
            session_id: SessionId::random(),
            uid: uid.clone(),
            role: Role::Web,
            last_seq: 9,
            acknowledged: 2,
            missed: vec![
                (
                    3,
                    Event::Registered {
                        uid,
                        role: Role::Web,
                        peer_present: true,
                    },
                ),
                (4, Event::SyncFrom),
                (5, Event::Relayed(Relay::Message(payload))),
                (6, Event::Ack { id: 17 }),
                (
                    7,
                    Event::Error {
                        code: ErrorCode::NoPeer,
                        message: Cow::Owned("gone".into()),
                        id: Some(18),
                    },
                ),
                (8, Event::IpAddrs(vec![Ipv4Addr::new(192, 0, 2, 1)].into())),
                (9, Event::PeerAway),
            ],
            highest_request_id: 18,
            was_away: true,
        };
        let wire = encode_export(&export).expect("encodes");
        let frame = Frame {
            t: "reply".into(),
            export: Some(wire),
            ..Frame::default()
        };
        let text = serde_json::to_string(&frame).expect("serializes");
        let back: Frame = serde_json::from_str(&text).expect("parses");
        let decoded = decode_export(back.export.as_ref().expect("export")).expect("decodes");
        assert_eq!(decoded, export);
    }

    #[test]
    fn session_events_do_not_cross() {
        assert!(encode_event(&Event::Ack { id: 1 }).is_err());
        assert!(decode_event("register", None).is_err());
    }

    #[test]
    fn outcomes_round_trip() {
        for outcome in [
            Ok(()),
            Err(DeliveryError::SlowConsumer),
            Err(DeliveryError::Gone),
            Err(DeliveryError::Unreachable),
        ] {
            assert_eq!(decode_outcome(encode_outcome(outcome)), outcome);
        }
    }
}

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

use crate::core::{Command, DeliveryError, Event};
use crate::doors::json::{decode_command, event_data};

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
    /// `delivered`, `slow_consumer` or `gone` (`reply`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
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
        relayed => match decode_command(relayed, data) {
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

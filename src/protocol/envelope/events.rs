//! JSON events read back into core events: the inverse of
//! [`super::encode_event`] (its names and [`super::event_data`]) for every
//! event a session keeps for a resume ([`Event::is_sequenced`]). The
//! cluster hands a session's kept events to another node in this shape.

use std::borrow::Cow;
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Data, IceServerJson, decode_command, ice_grant_from_json};
use crate::core::{Command, ErrorCode, Event, JsonPayload, RequestId, Role, Uid};

/// Why an event's JSON cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("unreadable event: {0}")]
pub struct UnreadableEvent(pub String);

fn unreadable(error: impl ToString) -> UnreadableEvent {
    UnreadableEvent(error.to_string())
}

fn data_as<T: serde::de::DeserializeOwned>(data: Option<&RawValue>) -> Result<T, UnreadableEvent> {
    serde_json::from_str(data.map_or("null", RawValue::get)).map_err(unreadable)
}

/// The event named `name`, with the JSON `data` and request `id` that
/// [`super::encode_event`] gave it. Every kept event reads back equal; a
/// name that is no kept event is refused.
pub fn decode_event(
    name: &str,
    data: Option<&RawValue>,
    id: Option<RequestId>,
) -> Result<Event, UnreadableEvent> {
    #[derive(Deserialize)]
    struct Registered {
        uid: String,
        role: String,
        #[serde(rename = "peerPresent")]
        peer_present: bool,
        #[serde(rename = "iceServers", default)]
        ice_servers: Option<Vec<IceServerJson>>,
        #[serde(rename = "iceServersExpireAt", default)]
        ice_servers_expire_at: Option<u64>,
    }
    #[derive(Deserialize)]
    struct IceServers {
        #[serde(rename = "iceServers")]
        ice_servers: Vec<IceServerJson>,
        #[serde(rename = "iceServersExpireAt", default)]
        expire_at: Option<u64>,
    }
    #[derive(Deserialize)]
    struct Error {
        code: String,
        message: String,
    }
    Ok(match name {
        "byebye" => Event::ByeBye,
        "syncfrom" => Event::SyncFrom,
        "peer_away" => Event::PeerAway,
        "peer_back" => Event::PeerBack,
        "registered" => {
            let registered: Registered = data_as(data)?;
            Event::Registered {
                uid: Uid::new(&registered.uid).map_err(unreadable)?,
                role: registered.role.parse::<Role>().map_err(unreadable)?,
                peer_present: registered.peer_present,
                ice_servers: registered.ice_servers.map(|servers| {
                    Arc::new(ice_grant_from_json(
                        servers,
                        registered.ice_servers_expire_at,
                    ))
                }),
            }
        }
        "iceservers" => {
            let list: IceServers = data_as(data)?;
            Event::IceServers(Arc::new(ice_grant_from_json(
                list.ice_servers,
                list.expire_at,
            )))
        }
        "notice" => Event::Notice(
            JsonPayload::from_raw(data.ok_or_else(|| unreadable("notice without data"))?)
                .map_err(unreadable)?,
        ),
        "ipaddr" => {
            let addresses: Vec<Ipv4Addr> = data_as(data)?;
            Event::IpAddrs(addresses.into())
        }
        "ack" => Event::Ack {
            id: id.ok_or_else(|| unreadable("ack without id"))?,
        },
        "error" => {
            let error: Error = data_as(data)?;
            Event::Error {
                code: ErrorCode::parse(&error.code)
                    .ok_or_else(|| unreadable(format!("code {}", error.code)))?,
                message: Cow::Owned(error.message),
                id,
            }
        }
        // A relayed event has its request's name and data.
        relayed => match decode_command(relayed, data.map(Data::Raw)) {
            Ok(Command::Relay(relay)) => Event::Relayed(relay),
            Ok(_) => return Err(unreadable(format!("{relayed} is no kept event"))),
            Err(rejection) => return Err(unreadable(rejection)),
        },
    })
}

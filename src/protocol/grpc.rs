//! The gRPC door's messages ⇄ the core: `ClientEvent` → [`Request`] and
//! [`Event`] → `ServerEvent` (proto/signalgate/v1/signaling.proto). The
//! door streams them; this module is the one place the two shapes meet.

use crate::core::{
    CallReport, CallReportFields, Command, Event, FileOffer, IceGrant, JsonPayload, Millis,
    Rejection, Relay, Request, RequestId, Role, Uid,
};
use crate::proto::encoded::{EncodedValue, PayloadError, ValueError};
use crate::proto::server::{self as pb, client_event, server_event};

/// A `ClientEvent` that could not become a request.
#[derive(Debug)]
pub enum DecodeFailure {
    /// A valid message the core cannot take: answered with an `error`
    /// event for this id; the stream stays open.
    Refused(Option<RequestId>, Rejection),
    /// A relayed value's bytes are not a `google.protobuf.Value`: the
    /// stream ends, as for any undecodable message.
    Undecodable,
}

/// `ClientEvent` → core request.
pub fn decode_event(message: pb::ClientEvent) -> Result<Request, DecodeFailure> {
    let id = (message.id != 0).then_some(message.id);
    let fail = |rejection| DecodeFailure::Refused(id, rejection);
    let event = message
        .event
        .ok_or_else(|| fail(Rejection::bad_request("ClientEvent has no event set")))?;
    let command = match event {
        client_event::Event::Register(register) => {
            let uid = Uid::new(&register.uid).map_err(fail)?;
            let role = match pb::Role::try_from(register.role) {
                Ok(pb::Role::Web) => Role::Web,
                Ok(pb::Role::App) => Role::App,
                _ => {
                    return Err(fail(Rejection::bad_request(
                        "role must be ROLE_WEB or ROLE_APP",
                    )));
                }
            };
            Command::Register { uid, role }
        }
        client_event::Event::Syncto(value) => Command::Relay(Relay::SyncTo(payload(value, id)?)),
        client_event::Event::Message(value) => Command::Relay(Relay::Message(payload(value, id)?)),
        client_event::Event::Export(value) => Command::Relay(Relay::Export(payload(value, id)?)),
        client_event::Event::Exception(value) => {
            Command::Relay(Relay::Exception(payload(value, id)?))
        }
        client_event::Event::Transfile(file) => Command::Relay(Relay::Transfile(FileOffer {
            size: file.size,
            name: file.name,
        })),
        client_event::Event::CtrlSendSpeed(speed) => {
            Command::Relay(Relay::CtrlSendSpeed(speed.bytes_received))
        }
        client_event::Event::Ipaddr(_) => Command::IpAddr,
        client_event::Event::IceServers(_) => Command::IceServers,
        client_event::Event::CallReport(report) => {
            Command::CallReport(call_report(report).map_err(fail)?)
        }
        client_event::Event::Resume(resume) => Command::Resume {
            token: resume.token,
            last_seq: resume.last_seq,
        },
    };
    Ok(Request::new(id, command))
}

/// A `CallReport` → the checked report (an empty `path` or `reason` is none).
fn call_report(report: pb::CallReport) -> Result<CallReport, Rejection> {
    let millis = |value: Option<i64>| {
        value.map(|ms| u64::try_from(ms).map_or(Millis::Invalid, Millis::Whole))
    };
    let present = |text: String| (!text.is_empty()).then_some(text);
    CallReport::check(CallReportFields {
        call: Some(report.call),
        result: Some(report.result),
        path: present(report.path),
        setup_ms: millis(report.setup_ms),
        duration_ms: millis(report.duration_ms),
        reason: present(report.reason),
    })
}

/// A relayed value: kept in its encoding when a gRPC peer would get the
/// same bytes back from its JSON text ([`EncodedValue::into_payload`]).
fn payload(value: EncodedValue, id: Option<RequestId>) -> Result<JsonPayload, DecodeFailure> {
    value.into_payload().map_err(|error| match error {
        PayloadError::Value(ValueError::Undecodable) => DecodeFailure::Undecodable,
        PayloadError::Value(error @ ValueError::NonFiniteNumber) => {
            DecodeFailure::Refused(id, Rejection::bad_request(error.to_string()))
        }
        PayloadError::Refused(rejection) => DecodeFailure::Refused(id, rejection),
    })
}

fn value(payload: &JsonPayload) -> EncodedValue {
    EncodedValue::from_payload(payload)
}

fn role(role: Role) -> i32 {
    match role {
        Role::Web => pb::Role::Web as i32,
        Role::App => pb::Role::App as i32,
    }
}

/// Core event → `ServerEvent`.
pub fn encode_event(event: &Event, seq: Option<u64>) -> pb::ServerEvent {
    use server_event::Event as Out;
    let out = match event {
        Event::Welcome {
            session_id,
            resume_token,
        } => Out::Welcome(pb::Welcome {
            message: crate::core::event::WELCOME_MESSAGE.to_owned(),
            id: session_id.to_string(),
            resume_token: resume_token.as_deref().unwrap_or_default().to_owned(),
        }),
        Event::Resumed {
            session_id,
            uid,
            role: resumed_role,
            resume_token,
            replayed,
            ice_servers,
        } => Out::Resumed(pb::Resumed {
            id: session_id.to_string(),
            uid: uid.to_string(),
            role: role(*resumed_role),
            resume_token: resume_token.to_string(),
            replayed: u64::try_from(*replayed).unwrap_or(u64::MAX),
            ice_servers: ice_list(ice_servers.as_deref()),
            ice_servers_expire_at: expire_at(ice_servers.as_deref()),
            polite: resumed_role.polite(),
        }),
        Event::PeerAway => Out::PeerAway(pb::PeerAway {}),
        Event::PeerBack => Out::PeerBack(pb::PeerBack {}),
        Event::Registered {
            uid,
            role: registered_role,
            peer_present,
            ice_servers,
        } => Out::Registered(pb::Registered {
            uid: uid.to_string(),
            role: role(*registered_role),
            peer_present: *peer_present,
            ice_servers: ice_list(ice_servers.as_deref()),
            ice_servers_expire_at: expire_at(ice_servers.as_deref()),
            polite: registered_role.polite(),
        }),
        Event::IceServers(grant) => Out::IceServers(pb::IceServers {
            ice_servers: ice_list(Some(grant)),
            expire_at: expire_at(Some(grant)),
        }),
        Event::SyncFrom => Out::Syncfrom(pb::SyncFrom {}),
        Event::Relayed(relay) => match relay {
            Relay::SyncTo(p) => Out::Syncto(value(p)),
            Relay::Message(p) => Out::Message(value(p)),
            Relay::Export(p) => Out::Export(value(p)),
            Relay::Exception(p) => Out::Exception(value(p)),
            Relay::Transfile(offer) => Out::Transfile(pb::Transfile {
                size: offer.size,
                name: offer.name.clone(),
            }),
            Relay::CtrlSendSpeed(bytes) => Out::CtrlSendSpeed(pb::CtrlSendSpeed {
                bytes_received: *bytes,
            }),
        },
        Event::IpAddrs(addresses) => Out::Ipaddr(pb::IpAddrs {
            addresses: addresses.iter().map(ToString::to_string).collect(),
        }),
        Event::ByeBye => Out::Byebye(pb::ByeBye {}),
        Event::Notice(data) => Out::Notice(value(data)),
        Event::Reconnect {
            resume_token,
            after_ms,
        } => Out::Reconnect(pb::Reconnect {
            resume_token: resume_token.to_string(),
            after_ms: *after_ms,
        }),
        Event::Ack { id } => Out::Ack(pb::Ack { id: *id }),
        Event::Error { code, message, id } => Out::Error(pb::Error {
            code: code.as_str().to_owned(),
            message: message.to_string(),
            id: id.unwrap_or(0),
        }),
    };
    pb::ServerEvent {
        seq: seq.unwrap_or(0),
        event: Some(out),
    }
}

/// A list as `IceServer` messages (empty strings for no credential).
fn ice_list(grant: Option<&IceGrant>) -> Vec<pb::IceServer> {
    grant.map_or_else(Vec::new, |grant| {
        grant
            .servers
            .iter()
            .map(|server| pb::IceServer {
                urls: server.urls.clone(),
                username: server
                    .credentials
                    .as_ref()
                    .map(|c| c.username.clone())
                    .unwrap_or_default(),
                credential: server
                    .credentials
                    .as_ref()
                    .map(|c| c.credential.clone())
                    .unwrap_or_default(),
            })
            .collect()
    })
}

/// The expiry of a list's credentials, `0` when none were minted.
fn expire_at(grant: Option<&IceGrant>) -> u64 {
    grant.and_then(|grant| grant.expire_at).unwrap_or(0)
}

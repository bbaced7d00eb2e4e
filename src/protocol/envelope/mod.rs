//! The JSON envelope `{"event": NAME, "data": ANY, "id": N}`: decoding
//! client frames into requests and rendering events, for the WebSocket
//! door, the Socket.IO door (its packets carry the same event names and
//! data) and the cluster (relayed events and hand-overs between nodes).
//!
//! Only the envelope is parsed; relayed `data` stays raw JSON text end to end.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

mod calls;
mod events;
mod ice;

pub use events::{UnreadableEvent, decode_event};
pub use ice::{IceFields, IceList, IceServerJson, ice_grant_from_json};

use crate::core::json_text::{JsonScanner, ScannedJson};
use crate::core::{
    Command, Event, FileOffer, JsonPayload, Rejection, Relay, Request, RequestId, Role, Uid,
};

/// A client frame before its `data` is interpreted.
#[derive(Deserialize)]
struct IncomingEnvelope<'a> {
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
}

/// A frame that could not be turned into a request: the rejection and the
/// request id, when the frame had a readable one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeFailure {
    /// The id to put on the `error` event.
    pub id: Option<RequestId>,
    /// What was wrong.
    pub rejection: Rejection,
}

/// Decodes one text frame of the WebSocket door.
pub fn decode_frame(text: &str) -> Result<Request, DecodeFailure> {
    if let Some(envelope) = plain_envelope(text) {
        return decode_envelope(
            envelope.event.map(Cow::Borrowed),
            envelope.data,
            envelope.id,
        );
    }
    // serde would also read a struct from an array; a frame is an object.
    if !text.trim_start().starts_with('{') {
        return Err(DecodeFailure {
            id: None,
            rejection: Rejection::bad_request(
                "a frame must be one JSON object {\"event\", \"data\", \"id\"}",
            ),
        });
    }
    let envelope: IncomingEnvelope<'_> = serde_json::from_str(text).map_err(|e| DecodeFailure {
        id: salvage_id(text),
        rejection: Rejection::bad_request(format!(
            "a frame must be one JSON object {{\"event\", \"data\", \"id\"}}: {e}"
        )),
    })?;
    decode_envelope(
        envelope.event,
        envelope.data.map(Data::Raw),
        envelope.id.map(RawValue::get),
    )
}

fn decode_envelope(
    event: Option<Cow<'_, str>>,
    data: Option<Data<'_>>,
    id: Option<&str>,
) -> Result<Request, DecodeFailure> {
    let id = match id {
        None => None,
        Some(raw) => Some(parse_request_id(raw).map_err(|rejection| DecodeFailure {
            id: None,
            rejection,
        })?),
    };
    let event = event.ok_or_else(|| DecodeFailure {
        id,
        rejection: Rejection::bad_request("missing \"event\""),
    })?;
    let command =
        decode_command(&event, data).map_err(|rejection| DecodeFailure { id, rejection })?;
    Ok(Request::new(id, command))
}

/// An envelope read by [`plain_envelope`]: what serde would have read, with
/// `data` already checked by the scanner.
struct PlainEnvelope<'a> {
    event: Option<&'a str>,
    data: Option<Data<'a>>,
    id: Option<&'a str>,
}

/// Reads the envelope in one pass with the JSON scanner, for the frames
/// clients send: an object whose keys and event name have no escapes, each
/// key once. `None` for anything else, which then goes through serde (for
/// the same result, or serde's own error message): what this returns is
/// exactly what serde reads from the same text.
fn plain_envelope(text: &str) -> Option<PlainEnvelope<'_>> {
    let mut scanner = JsonScanner::new(text);
    let mut envelope = PlainEnvelope {
        event: None,
        data: None,
        id: None,
    };
    let (mut seen_event, mut seen_data, mut seen_id) = (false, false, false);
    if !scanner.eat(b'{') {
        return None;
    }
    if !scanner.eat(b'}') {
        loop {
            let key = scanner.plain_string()?;
            if !scanner.eat(b':') {
                return None;
            }
            // A null reads as an absent field, as serde reads an `Option`.
            match key {
                "event" => {
                    if std::mem::replace(&mut seen_event, true) {
                        return None;
                    }
                    if !scanner.eat_null() {
                        envelope.event = Some(scanner.plain_string()?);
                    }
                }
                "data" => {
                    if std::mem::replace(&mut seen_data, true) {
                        return None;
                    }
                    if !scanner.eat_null() {
                        envelope.data = Some(Data::Scanned(scanner.value().ok()?));
                    }
                }
                "id" => {
                    if std::mem::replace(&mut seen_id, true) {
                        return None;
                    }
                    if !scanner.eat_null() {
                        envelope.id = Some(scanner.value().ok()?.text());
                    }
                }
                _ => {
                    scanner.value().ok()?;
                }
            }
            if scanner.eat(b'}') {
                break;
            }
            if !scanner.eat(b',') {
                return None;
            }
        }
    }
    scanner.at_end().then_some(envelope)
}

/// The request id of a frame that could not be decoded, when it can still
/// be told: every top-level `"id"` read before the frame went wrong (a
/// duplicate key, a syntax error later on) holds the same valid id. So the
/// `error` still names the request it answers.
fn salvage_id(text: &str) -> Option<RequestId> {
    let mut scanner = JsonScanner::new(text);
    let mut found: Option<RequestId> = None;
    if !scanner.eat(b'{') {
        return None;
    }
    while let Some(key) = scanner.plain_string() {
        if !scanner.eat(b':') {
            break;
        }
        let Ok(value) = scanner.value() else { break };
        if key == "id" {
            let id = parse_request_id(value.text()).ok()?;
            if found.is_some_and(|earlier| earlier != id) {
                return None;
            }
            found = Some(id);
        }
        if !scanner.eat(b',') {
            break;
        }
    }
    found
}

fn parse_request_id(raw: &str) -> Result<RequestId, Rejection> {
    match serde_json::from_str::<u64>(raw) {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(Rejection::bad_request("\"id\" must be a positive integer")),
    }
}

/// The `data` of a JSON request: a raw value serde_json checked, or a value
/// the scanner checked.
#[derive(Clone, Copy, Debug)]
pub enum Data<'a> {
    /// Checked by serde_json.
    Raw(&'a RawValue),
    /// Checked by the scanner.
    Scanned(ScannedJson<'a>),
}

impl<'a> Data<'a> {
    /// The JSON text.
    pub fn text(self) -> &'a str {
        match self {
            Data::Raw(raw) => raw.get(),
            Data::Scanned(scanned) => scanned.text(),
        }
    }

    fn payload(self) -> Result<JsonPayload, Rejection> {
        match self {
            Data::Raw(raw) => JsonPayload::from_raw(raw),
            Data::Scanned(scanned) => JsonPayload::from_scanned(scanned),
        }
    }
}

/// Interprets an event name and its data (shared by every JSON-speaking door).
pub fn decode_command(event: &str, data: Option<Data<'_>>) -> Result<Command, Rejection> {
    let payload = || data.map_or_else(|| Ok(JsonPayload::null()), Data::payload);
    Ok(match event {
        "register" => decode_register(data)?,
        "syncto" => Command::Relay(Relay::SyncTo(payload()?)),
        "message" => Command::Relay(Relay::Message(payload()?)),
        "export" => Command::Relay(Relay::Export(payload()?)),
        "exception" => Command::Relay(Relay::Exception(payload()?)),
        "transfile" => Command::Relay(Relay::Transfile(decode_transfile(data)?)),
        "ctrlSendSpeed" => Command::Relay(Relay::CtrlSendSpeed(decode_byte_count(data)?)),
        "ipaddr" => Command::IpAddr,
        "iceservers" => Command::IceServers,
        "callreport" => calls::decode_call_report(data)?,
        "resume" => decode_resume(data)?,
        other => {
            return Err(Rejection::bad_request(format!(
                "unknown event {:?}",
                truncate(other, 64)
            )));
        }
    })
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

#[derive(Deserialize)]
struct RegisterData {
    uid: serde_json::Value,
    #[serde(rename = "type")]
    role: serde_json::Value,
}

fn decode_register(data: Option<Data<'_>>) -> Result<Command, Rejection> {
    let data = data.ok_or_else(|| Rejection::bad_request("register needs {\"uid\", \"type\"}"))?;
    let RegisterData { uid, role } = serde_json::from_str(data.text())
        .map_err(|_| Rejection::bad_request("register needs {\"uid\", \"type\"}"))?;
    let uid = match &uid {
        serde_json::Value::String(s) => Uid::new(s)?,
        // The seed's clients sometimes send numeric uids; keep their text.
        serde_json::Value::Number(n) => Uid::new(&n.to_string())?,
        _ => return Err(Rejection::bad_request("uid must be a string")),
    };
    let role = decode_role(&role)?;
    Ok(Command::Register { uid, role })
}

/// Accepts the seed's numeric types (0 web, 1 app) and the names.
fn decode_role(value: &serde_json::Value) -> Result<Role, Rejection> {
    let invalid = || Rejection::bad_request("type must be 0 or \"web\", 1 or \"app\"");
    match value {
        serde_json::Value::Number(n) if n.as_u64() == Some(0) => Ok(Role::Web),
        serde_json::Value::Number(n) if n.as_u64() == Some(1) => Ok(Role::App),
        serde_json::Value::String(name) => name.parse().map_err(|_| invalid()),
        _ => Err(invalid()),
    }
}

#[derive(Deserialize)]
struct ResumeData {
    token: String,
    #[serde(alias = "lastSeq")]
    last_seq: u64,
}

fn decode_resume(data: Option<Data<'_>>) -> Result<Command, Rejection> {
    const SHAPE: &str = "resume needs {\"token\": string, \"last_seq\": number}";
    let data = data.ok_or_else(|| Rejection::bad_request(SHAPE))?;
    let ResumeData { token, last_seq } =
        serde_json::from_str(data.text()).map_err(|_| Rejection::bad_request(SHAPE))?;
    Ok(Command::Resume { token, last_seq })
}

#[derive(Deserialize)]
struct TransfileData {
    size: serde_json::Number,
    name: String,
}

fn decode_transfile(data: Option<Data<'_>>) -> Result<FileOffer, Rejection> {
    const SHAPE: &str = "transfile needs {\"size\": bytes, \"name\": string}";
    let data = data.ok_or_else(|| Rejection::bad_request(SHAPE))?;
    let TransfileData { size, name } =
        serde_json::from_str(data.text()).map_err(|_| Rejection::bad_request(SHAPE))?;
    let size = whole_number(&size).ok_or_else(|| Rejection::bad_request(SHAPE))?;
    Ok(FileOffer { size, name })
}

fn decode_byte_count(data: Option<Data<'_>>) -> Result<u64, Rejection> {
    const SHAPE: &str = "ctrlSendSpeed needs a byte count (a non-negative whole number)";
    let data = data.ok_or_else(|| Rejection::bad_request(SHAPE))?;
    let number: serde_json::Number =
        serde_json::from_str(data.text()).map_err(|_| Rejection::bad_request(SHAPE))?;
    whole_number(&number).ok_or_else(|| Rejection::bad_request(SHAPE))
}

/// A non-negative whole number (`1024` or `1024.0`), as JavaScript sends them.
fn whole_number(number: &serde_json::Number) -> Option<u64> {
    if let Some(n) = number.as_u64() {
        return Some(n);
    }
    let float = number.as_f64()?;
    (float >= 0.0 && float.fract() == 0.0 && float <= 9_007_199_254_740_992.0)
        .then_some(float as u64)
}

#[derive(Serialize)]
struct OutgoingEnvelope<'a> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<EventData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<RequestId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

/// The `data` of a server event in the JSON doors' shapes (shared by the
/// WebSocket and Socket.IO doors).
#[derive(Serialize)]
#[serde(untagged)]
pub enum EventData<'a> {
    /// `welcome`: `{"message", "id", "resumeToken"}`.
    Welcome {
        /// The greeting.
        message: &'static str,
        /// The session id.
        id: String,
        /// The resume token, when resumption is on (and, on Socket.IO, asked for).
        #[serde(rename = "resumeToken", skip_serializing_if = "Option::is_none")]
        resume_token: Option<&'a str>,
    },
    /// `resumed`: `{"id", "uid", "role", "type", "resumeToken", "replayed", "polite"}`.
    Resumed {
        /// The session id.
        id: String,
        /// The uid.
        uid: &'a str,
        /// `"web"` or `"app"`.
        role: &'static str,
        /// The seed's type.
        #[serde(rename = "type")]
        seed_type: u8,
        /// The next resume token.
        #[serde(rename = "resumeToken")]
        resume_token: &'a str,
        /// How many missed events follow.
        replayed: usize,
        /// Whether this side yields when both offer at once.
        polite: bool,
        /// Its fresh ICE servers, when configured.
        #[serde(flatten)]
        ice: IceFields<'a>,
    },
    /// `registered`: `{"uid", "role", "type", "peerPresent", "polite"}`.
    Registered {
        /// The uid.
        uid: &'a str,
        /// `"web"` or `"app"`.
        role: &'static str,
        /// The seed's type: 0 web, 1 app.
        #[serde(rename = "type")]
        seed_type: u8,
        /// Whether the peer is present.
        #[serde(rename = "peerPresent")]
        peer_present: bool,
        /// Whether this side yields when both offer at once; `None` keeps
        /// the seed's shape (the Socket.IO door).
        #[serde(skip_serializing_if = "Option::is_none")]
        polite: Option<bool>,
        /// Its ICE servers, when configured.
        #[serde(flatten)]
        ice: IceFields<'a>,
    },
    /// `iceservers`: `{"iceServers", "iceServersExpireAt"}`.
    IceServers(IceFields<'a>),
    /// Relayed JSON, passed through as text.
    Raw(&'a JsonPayload),
    /// `transfile`: `{"size", "name"}`.
    File {
        /// Bytes.
        size: u64,
        /// File name.
        name: &'a str,
    },
    /// `ctrlSendSpeed`: a number.
    Count(u64),
    /// `ipaddr`: a list of addresses.
    Addresses(&'a [Ipv4Addr]),
    /// `reconnect`: `{"resume_token", "after_ms"}`.
    Reconnect {
        /// The session's resume token.
        resume_token: &'a str,
        /// How long to wait before reconnecting.
        after_ms: u64,
    },
    /// `error`: `{"code", "message"}`.
    Error {
        /// The error code.
        code: &'static str,
        /// The explanation.
        message: &'a str,
    },
}

/// The data of `event`, or `None` for events without data (`syncfrom`,
/// `byebye`, `ack`, `peer_away`, `peer_back`).
pub fn event_data(event: &Event) -> Option<EventData<'_>> {
    Some(match event {
        Event::Welcome {
            session_id,
            resume_token,
        } => EventData::Welcome {
            message: crate::core::event::WELCOME_MESSAGE,
            id: session_id.to_string(),
            resume_token: resume_token.as_deref(),
        },
        Event::Resumed {
            session_id,
            uid,
            role,
            resume_token,
            replayed,
            ice_servers,
        } => EventData::Resumed {
            id: session_id.to_string(),
            uid: uid.as_str(),
            role: role.as_str(),
            seed_type: role.seed_type(),
            resume_token,
            replayed: *replayed,
            polite: role.polite(),
            ice: IceFields::of(ice_servers.as_deref()),
        },
        Event::Registered {
            uid,
            role,
            peer_present,
            ice_servers,
        } => EventData::Registered {
            uid: uid.as_str(),
            role: role.as_str(),
            seed_type: role.seed_type(),
            peer_present: *peer_present,
            polite: Some(role.polite()),
            ice: IceFields::of(ice_servers.as_deref()),
        },
        Event::IceServers(grant) => EventData::IceServers(IceFields::of(Some(grant))),
        Event::SyncFrom | Event::ByeBye | Event::Ack { .. } | Event::PeerAway | Event::PeerBack => {
            return None;
        }
        Event::Relayed(relay) => match relay {
            Relay::SyncTo(p) | Relay::Message(p) | Relay::Export(p) | Relay::Exception(p) => {
                EventData::Raw(p)
            }
            Relay::Transfile(offer) => EventData::File {
                size: offer.size,
                name: &offer.name,
            },
            Relay::CtrlSendSpeed(bytes) => EventData::Count(*bytes),
        },
        Event::IpAddrs(addresses) => EventData::Addresses(addresses),
        Event::Notice(data) => EventData::Raw(data),
        Event::Reconnect {
            resume_token,
            after_ms,
        } => EventData::Reconnect {
            resume_token,
            after_ms: *after_ms,
        },
        Event::Error { code, message, .. } => EventData::Error {
            code: code.as_str(),
            message,
        },
    })
}

/// The request id an event answers (`ack` and `error`).
pub fn event_request_id(event: &Event) -> Option<RequestId> {
    match event {
        Event::Ack { id } => Some(*id),
        Event::Error { id, .. } => *id,
        Event::Welcome { .. }
        | Event::Resumed { .. }
        | Event::PeerAway
        | Event::PeerBack
        | Event::Registered { .. }
        | Event::IceServers(_)
        | Event::SyncFrom
        | Event::Relayed(_)
        | Event::IpAddrs(_)
        | Event::ByeBye
        | Event::Notice(_)
        | Event::Reconnect { .. } => None,
    }
}

/// Renders an event (with its sequence number) as the text of one
/// WebSocket frame.
pub fn encode_event(event: &Event, seq: Option<u64>) -> String {
    if let Event::Relayed(
        Relay::SyncTo(payload)
        | Relay::Message(payload)
        | Relay::Export(payload)
        | Relay::Exception(payload),
    ) = event
    {
        return relayed_envelope(event.name(), payload, seq);
    }
    let envelope = OutgoingEnvelope {
        event: event.name(),
        data: event_data(event),
        id: event_request_id(event),
        seq,
    };
    // Serializing these envelopes cannot fail: every key is a string.
    serde_json::to_string(&envelope).unwrap_or_else(|_| {
        String::from(r#"{"event":"error","data":{"code":"INTERNAL","message":"encoding failed"}}"#)
    })
}

/// The envelope of a relayed JSON payload, written around the payload's
/// text in one allocation: the same text serde writes for
/// [`OutgoingEnvelope`] (event names are plain ASCII words, the payload is
/// valid JSON already), without its per-field escaping on the hot path.
fn relayed_envelope(name: &str, payload: &JsonPayload, seq: Option<u64>) -> String {
    // The exact length: a `String` whose capacity is its length becomes the
    // frame's bytes without another allocation.
    let seq_len = seq.map_or(0, |seq| 7 + seq.checked_ilog10().unwrap_or(0) as usize + 1);
    let length = 20 + name.len() + payload.len() + seq_len;
    let mut text = String::with_capacity(length);
    text.push_str(r#"{"event":""#);
    text.push_str(name);
    text.push_str(r#"","data":"#);
    text.push_str(payload.as_str());
    if let Some(seq) = seq {
        text.push_str(r#","seq":"#);
        text.push_str(itoa::Buffer::new().format(seq));
    }
    text.push('}');
    debug_assert_eq!(text.len(), length);
    text
}

#[cfg(test)]
mod tests;

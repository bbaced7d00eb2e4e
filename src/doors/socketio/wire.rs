//! What the Socket.IO door reads and writes: packets into requests (with a
//! resumption client's own ids), events and acknowledgement answers in the
//! seed's shapes, and the wait for room in socketioxide's buffer.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use serde::ser::SerializeTuple;
use serde_json::value::RawValue;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::socket::Socket;
use socketioxide::{SendError, SocketError};
use socketioxide_core::Value as PacketValue;

use crate::core::json_text::{JsonScanner, ScannedJson};
use crate::core::{Delivery, ErrorCode, Event, Rejection, RequestId, SessionLink};
use crate::protocol::envelope::{
    Data, EventData, IceFields, decode_command, event_data, event_request_id,
};

use super::query_parameter;

/// What an acknowledgement callback receives.
#[derive(Serialize)]
pub(super) struct AckReply<'a> {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<EventData<'a>>,
}

impl<'a> AckReply<'a> {
    pub(super) fn done() -> Self {
        AckReply {
            ok: true,
            error: None,
        }
    }

    pub(super) fn failed(rejection: &'a Rejection) -> Self {
        AckReply {
            ok: false,
            error: Some(EventData::Error {
                code: rejection.code.as_str(),
                message: &rejection.message,
            }),
        }
    }
}

/// Serializes as "no arguments": `["syncfrom"]`, as the seed emits it.
pub(super) struct NoArguments;

impl Serialize for NoArguments {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_tuple(0)?.end()
    }
}

/// Request ids the door makes up for acknowledgement callbacks start here,
/// far above any id a client may choose (clients use at most 2^53).
pub(super) const DOOR_ID_BASE: RequestId = 1 << 62;

/// The acknowledgement callbacks of requests in flight, by request id.
pub(super) struct PendingAcks {
    next_door_id: RequestId,
    callbacks: HashMap<RequestId, AckSender>,
}

impl Default for PendingAcks {
    fn default() -> Self {
        PendingAcks {
            next_door_id: DOOR_ID_BASE,
            callbacks: HashMap::new(),
        }
    }
}

impl PendingAcks {
    /// The request id for a packet: the client's own (from the trailing
    /// `{"id"}` argument of a resumption client, which identifies re-sends
    /// across connections) or one made up for its callback.
    pub(super) fn track(
        &mut self,
        ack: Option<AckSender>,
        client_id: Option<RequestId>,
    ) -> Option<RequestId> {
        let id = match client_id {
            Some(id) => id,
            None if ack.is_some() => {
                self.next_door_id += 1;
                self.next_door_id
            }
            None => return None,
        };
        if let Some(ack) = ack {
            self.callbacks.insert(id, ack);
        }
        Some(id)
    }
}

/// The trailing argument a resumption client may add to a request:
/// `{"id": N}`, its own request id.
#[derive(serde::Deserialize)]
pub(super) struct RequestMeta {
    id: RequestId,
}

/// Packet → command (and the client's own request id). The packet text is
/// `["event", data, {"id": N}?]`; `data` stays raw JSON. The trailing id is
/// read only from resumption clients (`resume=1`): seed clients' extra
/// arguments are ignored as the seed ignored them.
pub(super) fn decode_packet(
    value: &PacketValue,
    resumption_client: bool,
) -> Result<(crate::core::Command, Option<RequestId>), Rejection> {
    let (text, attachments) = match value {
        PacketValue::Str(text, attachments) => (text.as_str(), attachments),
        PacketValue::Bytes(_) => {
            return Err(Rejection::bad_request("binary packets are not accepted"));
        }
    };
    if attachments.as_ref().is_some_and(|a| !a.is_empty()) {
        return Err(Rejection::bad_request(
            "binary attachments are not accepted; send JSON",
        ));
    }
    let (event, data, meta) = match plain_packet(text) {
        Some((event, data, meta)) => (event, data.map(Data::Scanned), meta.map(|meta| meta.text())),
        None => {
            let arguments: Vec<&RawValue> = serde_json::from_str(text)
                .map_err(|_| Rejection::bad_request("malformed event packet"))?;
            let (event, data, meta) = match arguments.as_slice() {
                [event, rest @ ..] => (event, rest.first().copied(), rest.get(1).copied()),
                [] => return Err(Rejection::bad_request("event packet without a name")),
            };
            let event: &str = serde_json::from_str(event.get())
                .map_err(|_| Rejection::bad_request("event name must be a string"))?;
            (event, data.map(Data::Raw), meta.map(RawValue::get))
        }
    };
    let client_id = match meta.filter(|_| resumption_client) {
        Some(meta) => Some(
            serde_json::from_str::<RequestMeta>(meta)
                .ok()
                .filter(|meta| meta.id > 0 && meta.id < DOOR_ID_BASE)
                .ok_or_else(|| {
                    Rejection::bad_request(
                        "the argument after data must be {\"id\": positive integer}",
                    )
                })?
                .id,
        ),
        None => None,
    };
    // A null placeholder before the id argument means "no data".
    let data = data.filter(|data| !(meta.is_some() && data.text() == "null"));
    Ok((decode_command(event, data)?, client_id))
}

/// Reads `["event", data?, meta?, ...]` in one pass with the JSON scanner
/// when the event name has no escapes: the name, the checked `data` and
/// `meta` arguments (later ones are checked and ignored). `None` for
/// anything else, which serde reads as before.
pub(super) fn plain_packet(
    text: &str,
) -> Option<(&str, Option<ScannedJson<'_>>, Option<ScannedJson<'_>>)> {
    let mut scanner = JsonScanner::new(text);
    if !scanner.eat(b'[') {
        return None;
    }
    let event = scanner.plain_string()?;
    let mut arguments = [None, None];
    let mut count = 0;
    while !scanner.eat(b']') {
        if !scanner.eat(b',') {
            return None;
        }
        let argument = scanner.value().ok()?;
        if let Some(slot) = arguments.get_mut(count) {
            *slot = Some(argument);
        }
        count += 1;
    }
    let [data, meta] = arguments;
    scanner.at_end().then_some((event, data, meta))
}

/// Why an event could not be emitted.
pub(super) struct Undeliverable;

/// How long to wait before retrying an emit into socketioxide's full buffer.
pub(super) const FULL_BUFFER_RETRY: Duration = Duration::from_millis(5);

/// Emits once there is room in socketioxide's per-socket buffer, so that a
/// slow client backs up into the session's outbox, where the core's
/// slow-consumer policy applies as on every door. Gives up when the session
/// is killed or the socket is closed.
pub(super) async fn patiently(
    link: &SessionLink,
    mut attempt: impl FnMut() -> Result<(), SendError>,
) -> Result<(), Undeliverable> {
    loop {
        match attempt() {
            Ok(()) => return Ok(()),
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                if link.is_killed() {
                    return Err(Undeliverable);
                }
                tokio::time::sleep(FULL_BUFFER_RETRY).await;
            }
            Err(SendError::Socket(SocketError::Closed)) => return Err(Undeliverable),
            Err(SendError::Serialize(error)) => {
                // Our own shapes always serialize; keep serving if one did not.
                tracing::error!(%error, "cannot encode a Socket.IO event");
                return Ok(());
            }
        }
    }
}

/// Whether the client asked for resumption (query `resume=1`): only then
/// does it get the resume token in `welcome` and a trailing `{"seq": N}`
/// argument on sequenced events, so that seed clients see the seed's exact
/// shapes.
pub(super) fn wants_resumption<A: socketioxide::adapter::Adapter>(socket: &Socket<A>) -> bool {
    query_parameter(socket, "resume").is_some_and(|value| value == "1")
}

/// The trailing argument that carries a sequence number (empty for the
/// door's own unsequenced errors), for clients that asked for resumption.
#[derive(Serialize)]
pub(super) struct SeqArgument {
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

/// Emits an event that is not part of the session's sequence (the door's
/// own errors), with an empty trailing argument for resumption clients.
pub(super) fn emit_unsequenced<A: socketioxide::adapter::Adapter>(
    socket: &Socket<A>,
    event: &Event,
) -> Result<(), SendError> {
    let data = event_data(event);
    if wants_resumption(socket) {
        socket.emit(event.name(), &(&data, SeqArgument { seq: None }))
    } else {
        socket.emit(event.name(), &data)
    }
}

/// Emits one event in the seed's shapes; answers an acknowledgement
/// callback instead when the event concludes a request that had one.
pub(super) async fn emit(
    socket: &SocketRef,
    acks: &mut PendingAcks,
    link: &SessionLink,
    delivery: &Delivery,
    with_seq: bool,
) -> Result<(), Undeliverable> {
    let event = delivery.event.as_ref();
    let seq = with_seq.then_some(SeqArgument { seq: delivery.seq });
    if let Some(id) = event_request_id(event)
        && let Some(ack) = acks.callbacks.remove(&id)
    {
        // Only the events that carry a request id (`event_request_id`, one
        // exhaustive list) get here: an `error` fails the callback, the
        // `ack` completes it.
        let rejection;
        let reply = if let Event::Error { code, message, .. } = event {
            rejection = Rejection::new(*code, message.clone());
            AckReply::failed(&rejection)
        } else {
            AckReply::done()
        };
        // A resumption client learns the answer's sequence number from a
        // second argument, as from any event: its `last_seq` must count
        // the answers it had, or a resume would replay them.
        let sent = match &seq {
            Some(seq) => ack.send(&(&reply, seq)),
            None => ack.send(&reply),
        };
        // An acknowledgement is consumed by a failed send and cannot wait
        // for room: a client too slow to take the answers to its own
        // requests is a slow consumer.
        return match sent {
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                link.kill(ErrorCode::SlowConsumer);
                Err(Undeliverable)
            }
            Err(SendError::Socket(SocketError::Closed)) => Err(Undeliverable),
            _ => Ok(()),
        };
    }
    let mut data = event_data(event);
    if let Some(EventData::Registered { ice, polite, .. }) = &mut data {
        // `registered` keeps its seed-era shape on this door: seed clients
        // see nothing new (docs/PROTOCOL.md, *ICE servers*, *Negotiation*).
        *ice = IceFields::default();
        *polite = None;
    }
    match (event, data) {
        // Acks for requests without a callback: nothing to say.
        (Event::Ack { .. }, _) => Ok(()),
        // The seed emits one `ipaddr` per address.
        (Event::IpAddrs(addresses), _) => {
            for address in addresses.iter() {
                let address = address.to_string();
                match &seq {
                    Some(seq) => {
                        patiently(link, || socket.emit("ipaddr", &(&address, seq))).await?
                    }
                    None => patiently(link, || socket.emit("ipaddr", &address)).await?,
                }
            }
            Ok(())
        }
        // The resume token only for clients that asked for resumption.
        (Event::Welcome { session_id, .. }, _) if !with_seq => {
            let seed_welcome = Event::Welcome {
                session_id: *session_id,
                resume_token: None,
            };
            let data = event_data(&seed_welcome);
            patiently(link, || socket.emit("welcome", &data)).await
        }
        (_, Some(data)) => match &seq {
            Some(seq) => patiently(link, || socket.emit(event.name(), &(&data, seq))).await,
            None => patiently(link, || socket.emit(event.name(), &data)).await,
        },
        (_, None) => match &seq {
            Some(seq) => patiently(link, || socket.emit(event.name(), &(seq,))).await,
            None => patiently(link, || socket.emit(event.name(), &NoArguments)).await,
        },
    }
}

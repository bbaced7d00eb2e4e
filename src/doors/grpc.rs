//! The gRPC door: `signalgate.v1.Signaling/Connect`, one bidirectional
//! stream per session.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

use crate::auth::{AuthPolicy, bearer};
use crate::core::{
    Command, Delivery, DoorKind, EndReason, ErrorCode, Event, FileOffer, Hub, JsonPayload,
    Rejection, Relay, Request, RequestId, Role, Session, SessionLink, Uid,
};
use crate::proto::encoded::{EncodedValue, ValueError};
use crate::proto::server::{self as pb, client_event, server_event};
use crate::telemetry::metrics;

/// Events buffered between a session's task and tonic, on top of the outbox.
const STREAM_BUFFER: usize = 16;

/// How long the door watches the response stream after the request stream
/// ends, to tell a cancelled stream from a half-close.
const CANCEL_PROBE: Duration = Duration::from_millis(100);

/// How long the door waits to hand a final error and status to tonic.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The tonic service: opens a core session per `Connect` stream.
#[derive(Clone, Debug)]
pub struct GrpcDoor {
    hub: Hub,
    auth: AuthPolicy,
}

impl GrpcDoor {
    /// The door over `hub`.
    pub fn new(hub: Hub, auth: AuthPolicy) -> Self {
        GrpcDoor { hub, auth }
    }
}

#[tonic::async_trait]
impl pb::signaling_server::Signaling for GrpcDoor {
    type ConnectStream = ReceiverStream<Result<pb::ServerEvent, Status>>;

    async fn connect(
        &self,
        request: tonic::Request<Streaming<pb::ClientEvent>>,
    ) -> Result<tonic::Response<Self::ConnectStream>, Status> {
        if self.hub.is_shutting_down() {
            return Err(status_for(ErrorCode::ShuttingDown));
        }
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(bearer);
        let identity = self.auth.authenticate(token).map_err(|error| {
            metrics::refused("unauthenticated");
            Status::unauthenticated(format!("UNAUTHENTICATED: {error}"))
        })?;
        let (session, link) = self.hub.open(DoorKind::Grpc, identity);
        let (outgoing, stream) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(serve(request.into_inner(), session, link, outgoing));
        Ok(tonic::Response::new(ReceiverStream::new(stream)))
    }
}

type Outgoing = mpsc::Sender<Result<pb::ServerEvent, Status>>;

async fn serve(
    inbound: Streaming<pb::ClientEvent>,
    session: Session,
    link: SessionLink,
    outgoing: Outgoing,
) {
    let (reason, session, last_words) = pump(inbound, session, link, &outgoing).await;
    // Free the role and tell the peer first: a stuck stream must not delay it.
    session.end(reason).await;
    if let Some((queued, event, status)) = last_words {
        finish_with(&outgoing, queued, event, status).await;
    }
}

/// What a stream ends with: the events still queued for it (written
/// first), a last event, and the status.
type LastWords = Option<(Vec<Delivery>, Event, Status)>;

async fn pump(
    mut inbound: Streaming<pb::ClientEvent>,
    mut session: Session,
    mut link: SessionLink,
    outgoing: &Outgoing,
) -> (EndReason, Session, LastWords) {
    // Made once each, not on every wake-up (a new waiter costs about 400
    // instructions): a kill wakes `killed`, whichever branch the loop is
    // in; tonic dropping the response stream wakes `gone`.
    let killed = link.killed();
    tokio::pin!(killed);
    let gone = outgoing.closed();
    tokio::pin!(gone);
    loop {
        tokio::select! {
            biased;
            () = &mut killed => {
                let code = link.kill_reason().unwrap_or(ErrorCode::ShuttingDown);
                let queued = if code.flushes_queue_on_close() {
                    std::iter::from_fn(|| link.try_next_event()).collect()
                } else {
                    Vec::new()
                };
                return (EndReason::Closed(code), session, Some((queued, Event::farewell(code), status_for(code))));
            }
            () = &mut gone => return (EndReason::ConnectionLost, session, None),
            event = link.next_event() => {
                let Some(event) = event else {
                    return (EndReason::ConnectionLost, session, None);
                };
                tokio::select! {
                    biased;
                    // The loop's first branch handles the kill.
                    () = &mut killed => {}
                    sent = outgoing.send(Ok(encode_event(&event.event, event.seq))) => {
                        if sent.is_err() {
                            return (EndReason::ConnectionLost, session, None);
                        }
                    }
                }
            }
            message = inbound.message() => match message {
                Ok(Some(message)) => match decode_event(message) {
                    Ok(request) => session.handle(request).await,
                    Err(DecodeFailure::Refused(id, rejection)) => session.reject(id, rejection),
                    Err(DecodeFailure::Undecodable) => {
                        let (rejection, grpc_code) = undecodable();
                        let status = Status::new(grpc_code, rejection.message.to_string());
                        return (EndReason::ProtocolViolation(rejection.code), session, Some((Vec::new(), Event::error(rejection, None), status)));
                    }
                },
                // End of the request stream: a half-close (clean) or a
                // RST_STREAM(CANCEL), which hyper also reports as a plain end.
                // A cancel takes the response stream down with it; a
                // half-close leaves it open.
                Ok(None) => {
                    let cancelled = tokio::time::timeout(CANCEL_PROBE, &mut gone).await.is_ok();
                    let reason = if cancelled { EndReason::ConnectionLost } else { EndReason::ClientClosed };
                    return (reason, session, None);
                }
                Err(status) => match violation(&status) {
                    Some((rejection, grpc_code)) => {
                        let code = rejection.code;
                        let status = Status::new(grpc_code, rejection.message.to_string());
                        return (EndReason::ProtocolViolation(code), session, Some((Vec::new(), Event::error(rejection, None), status)));
                    }
                    None => return (EndReason::ConnectionLost, session, None),
                },
            },
        }
    }
}

/// Sends what was still queued, a last event and the final status, if the
/// client is still there (all within the close timeout).
async fn finish_with(outgoing: &Outgoing, queued: Vec<Delivery>, last: Event, status: Status) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        for delivery in queued {
            if outgoing
                .send(Ok(encode_event(&delivery.event, delivery.seq)))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = outgoing.send(Ok(encode_event(&last, None))).await;
        let _ = outgoing.send(Err(status)).await;
    })
    .await;
}

/// The gRPC status a session ends with when the server closes it.
fn status_for(code: ErrorCode) -> Status {
    let grpc_code = match code {
        ErrorCode::Replaced => Code::Aborted,
        ErrorCode::SlowConsumer | ErrorCode::RateLimited => Code::ResourceExhausted,
        ErrorCode::RegisterTimeout => Code::DeadlineExceeded,
        ErrorCode::ShuttingDown => Code::Unavailable,
        ErrorCode::MessageTooLarge => Code::ResourceExhausted,
        ErrorCode::BadRequest => Code::InvalidArgument,
        _ => Code::Internal,
    };
    Status::new(grpc_code, code.as_str())
}

/// A stream error caused by the client's bytes (rather than by the
/// connection going away): the rejection and the status the stream ends with.
fn violation(status: &Status) -> Option<(Rejection, Code)> {
    match status.code() {
        // tonic's decode limit.
        Code::OutOfRange => Some((
            Rejection::new(ErrorCode::MessageTooLarge, "message exceeds the size limit"),
            Code::OutOfRange,
        )),
        // prost could not decode the bytes.
        Code::Internal if status.message().contains("decode") => Some(undecodable()),
        _ => None,
    }
}

/// Bytes that are not a `ClientEvent` (also inside a relayed value, which
/// stays encoded until the door converts it): the rejection and the status
/// the stream ends with.
fn undecodable() -> (Rejection, Code) {
    (
        Rejection::bad_request("the message is not a valid ClientEvent"),
        Code::InvalidArgument,
    )
}

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
        client_event::Event::Syncto(value) => Command::Relay(Relay::SyncTo(payload(&value, id)?)),
        client_event::Event::Message(value) => Command::Relay(Relay::Message(payload(&value, id)?)),
        client_event::Event::Export(value) => Command::Relay(Relay::Export(payload(&value, id)?)),
        client_event::Event::Exception(value) => {
            Command::Relay(Relay::Exception(payload(&value, id)?))
        }
        client_event::Event::Transfile(file) => Command::Relay(Relay::Transfile(FileOffer {
            size: file.size,
            name: file.name,
        })),
        client_event::Event::CtrlSendSpeed(speed) => {
            Command::Relay(Relay::CtrlSendSpeed(speed.bytes_received))
        }
        client_event::Event::Ipaddr(_) => Command::IpAddr,
        client_event::Event::Resume(resume) => Command::Resume {
            token: resume.token,
            last_seq: resume.last_seq,
        },
    };
    Ok(Request::new(id, command))
}

fn payload(value: &EncodedValue, id: Option<RequestId>) -> Result<JsonPayload, DecodeFailure> {
    match value.to_raw_json() {
        Ok(raw) => JsonPayload::from_boxed_raw(raw).map_err(|r| DecodeFailure::Refused(id, r)),
        Err(ValueError::Undecodable) => Err(DecodeFailure::Undecodable),
        Err(error @ ValueError::NonFiniteNumber) => Err(DecodeFailure::Refused(
            id,
            Rejection::bad_request(error.to_string()),
        )),
    }
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
fn encode_event(event: &Event, seq: Option<u64>) -> pb::ServerEvent {
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
        } => Out::Resumed(pb::Resumed {
            id: session_id.to_string(),
            uid: uid.to_string(),
            role: role(*resumed_role),
            resume_token: resume_token.to_string(),
            replayed: u64::try_from(*replayed).unwrap_or(u64::MAX),
        }),
        Event::PeerAway => Out::PeerAway(pb::PeerAway {}),
        Event::PeerBack => Out::PeerBack(pb::PeerBack {}),
        Event::Registered {
            uid,
            role: registered_role,
            peer_present,
        } => Out::Registered(pb::Registered {
            uid: uid.to_string(),
            role: role(*registered_role),
            peer_present: *peer_present,
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

//! The gRPC door: `signalgate.v1.Signaling/Connect`, one bidirectional
//! stream per session.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_stream::Stream;
use tonic::{Code, Status, Streaming};

use super::close::{CLOSE_TIMEOUT, Transport, close_session};
use super::{Presented, authenticate};
use crate::auth::AuthPolicy;
use crate::core::{
    DoorKind, EndReason, ErrorCode, Event, GrpcStatus, Hub, Opening, Rejection, Session,
    SessionLink,
};
use crate::proto::server as pb;
use crate::protocol::grpc::{DecodeFailure, decode_event, encode_event};

/// How long the door watches the response stream after the request stream
/// ends, to tell a cancelled stream from a half-close.
const CANCEL_PROBE: Duration = Duration::from_millis(100);

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

/// What the gRPC door needs from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct GrpcConfig {
    /// Largest `ClientEvent` accepted, in bytes (larger ends the stream
    /// with `OUT_OF_RANGE`); a `ServerEvent` may be four times that (a
    /// relayed payload plus its envelope).
    pub max_message_bytes: usize,
}

/// The door's routes: `signalgate.v1.Signaling/*` over `hub`, with the
/// message size limits.
pub fn router(hub: Hub, config: &GrpcConfig, auth: AuthPolicy) -> axum::Router {
    let signaling = pb::signaling_server::SignalingServer::new(GrpcDoor::new(hub, auth))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes.saturating_mul(4));
    super::grpc_route(axum::Router::new(), signaling)
}

#[tonic::async_trait]
impl pb::signaling_server::Signaling for GrpcDoor {
    type ConnectStream = EventStream;

    async fn connect(
        &self,
        request: tonic::Request<Streaming<pb::ClientEvent>>,
    ) -> Result<tonic::Response<Self::ConnectStream>, Status> {
        if self.hub.is_shutting_down() || self.hub.is_draining() {
            return Err(status_for(ErrorCode::ShuttingDown));
        }
        let presented = Presented {
            token: None,
            authorization: request
                .metadata()
                .get("authorization")
                .and_then(|value| value.to_str().ok()),
        };
        let identity = authenticate(&self.auth, presented)
            .await
            .map_err(|error| Status::unauthenticated(format!("UNAUTHENTICATED: {error}")))?;
        let remote = super::remote_addr(request.extensions());
        let (session, link) = self.hub.open(Opening {
            door: DoorKind::Grpc,
            identity,
            remote_addr: remote,
            can_resume: true,
        });
        let (stream, handles) = EventStream::new(link);
        tokio::spawn(serve(request.into_inner(), session, handles));
        Ok(tonic::Response::new(stream))
    }
}

/// How the request side ended a session, as told to its response stream.
#[derive(Debug)]
enum Ending {
    /// Write what is queued, then end with `OK` (a half-close; or the
    /// client is gone and nothing will be read).
    Quietly,
    /// Write what is queued, then this `error` event, then end with this
    /// status (bytes that are not a `ClientEvent`, a message too large).
    Violation(Event, Status),
}

/// The response stream's link, shared with the request side only so that
/// it can drop the queued events of a stream that cannot finish.
type SharedLink = Arc<Mutex<SessionLink>>;

fn lock_link(link: &SharedLink) -> MutexGuard<'_, SessionLink> {
    crate::sync::lock(link)
}

/// The request side's handles on a response stream.
struct StreamHandles {
    ending: oneshot::Sender<Ending>,
    /// Resolves (with an error: nothing is ever sent) once tonic drops the
    /// response stream: the stream finished, or the client cancelled it.
    gone: oneshot::Receiver<Infallible>,
    link: SharedLink,
}

/// The response stream of one `Connect`: tonic takes the session's events
/// straight from its outbox (no task and no channel in between), then the
/// last words once the session ends.
pub struct EventStream {
    link: SharedLink,
    /// Made once, not on every poll (a new waiter costs about 400
    /// instructions).
    killed: Pin<Box<dyn Future<Output = ()> + Send>>,
    ending: oneshot::Receiver<Ending>,
    /// Once the end is decided: what is left to write.
    last_words: Option<VecDeque<Result<pb::ServerEvent, Status>>>,
    /// Dropped with the stream, which wakes the request side's `gone`.
    _alive: oneshot::Sender<Infallible>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

impl EventStream {
    fn new(link: SessionLink) -> (EventStream, StreamHandles) {
        let (ending_sender, ending) = oneshot::channel();
        let (alive, gone) = oneshot::channel();
        let killed = Box::pin(link.killed());
        let link = Arc::new(Mutex::new(link));
        let stream = EventStream {
            link: Arc::clone(&link),
            killed,
            ending,
            last_words: None,
            _alive: alive,
        };
        let handles = StreamHandles {
            ending: ending_sender,
            gone,
            link,
        };
        (stream, handles)
    }
}

/// Every event still queued on `link`, encoded.
fn queued(link: &mut SessionLink) -> VecDeque<Result<pb::ServerEvent, Status>> {
    std::iter::from_fn(|| link.try_next_event())
        .map(|delivery| Ok(encode_event(&delivery.event, delivery.seq)))
        .collect()
}

impl Stream for EventStream {
    type Item = Result<pb::ServerEvent, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(words) = &mut this.last_words {
                return Poll::Ready(words.pop_front());
            }
            let mut guard = lock_link(&this.link);
            let link = &mut *guard;
            if this.killed.as_mut().poll(cx).is_ready() {
                let last = link.last_words();
                let mut words: VecDeque<_> = last
                    .queued
                    .iter()
                    .map(|delivery| Ok(encode_event(&delivery.event, delivery.seq)))
                    .collect();
                if let Some(farewell) = &last.farewell {
                    words.push_back(Ok(encode_event(farewell, None)));
                }
                words.push_back(Err(status_for(last.code)));
                this.last_words = Some(words);
                continue;
            }
            if let Poll::Ready(ending) = Pin::new(&mut this.ending).poll(cx) {
                let mut words = queued(link);
                if let Ok(Ending::Violation(event, status)) = ending {
                    words.push_back(Ok(encode_event(&event, None)));
                    words.push_back(Err(status));
                }
                this.last_words = Some(words);
                continue;
            }
            return link
                .poll_next_event(cx)
                .map(|delivery| Some(Ok(encode_event(&delivery.event, delivery.seq))));
        }
    }
}

/// The request side of a session: reads `ClientEvent`s into the core until
/// the session ends, then tells the response stream how to finish.
///
/// An `async` block, not an `async fn`: the block works on what it captured
/// in place, where an `async fn` would keep its arguments and the locals
/// moved out of them side by side for the task's whole life.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments beside the locals moved out of them"
)]
fn serve(
    mut inbound: Streaming<pb::ClientEvent>,
    mut session: Session,
    handles: StreamHandles,
) -> impl Future<Output = ()> + Send {
    async move {
        let StreamHandles {
            ending,
            mut gone,
            link,
        } = handles;
        // Made once each, not on every wake-up.
        let killed = session.killed();
        tokio::pin!(killed);
        // Whether `gone` has resolved (a oneshot must not be polled again).
        let mut stream_dropped = false;
        let (reason, words) = loop {
            tokio::select! {
                biased;
                // The response stream writes the farewell.
                () = &mut killed => {
                    let code = session.kill_reason().unwrap_or(ErrorCode::ShuttingDown);
                    break (EndReason::Closed(code), Ending::Quietly);
                }
                _ = &mut gone => {
                    stream_dropped = true;
                    break (EndReason::ConnectionLost, Ending::Quietly);
                }
                message = inbound.message() => match message {
                    Ok(Some(message)) => match decode_event(message) {
                        Ok(request) => session.handle(request).await,
                        Err(DecodeFailure::Refused(id, rejection)) => session.reject(id, rejection),
                        Err(DecodeFailure::Undecodable) => {
                            let (rejection, grpc_code) = undecodable();
                            let status = Status::new(grpc_code, rejection.message.to_string());
                            break (EndReason::ProtocolViolation(rejection.code), Ending::Violation(Event::error(rejection, None), status));
                        }
                    },
                    // End of the request stream: a half-close (clean) or a
                    // RST_STREAM(CANCEL), which hyper also reports as a plain end.
                    // A cancel takes the response stream down with it; a
                    // half-close leaves it open.
                    Ok(None) => {
                        let cancelled = tokio::time::timeout(CANCEL_PROBE, &mut gone).await.is_ok();
                        stream_dropped = cancelled;
                        let reason = if cancelled { EndReason::ConnectionLost } else { EndReason::ClientClosed };
                        break (reason, Ending::Quietly);
                    }
                    Err(status) => match violation(&status) {
                        Some((rejection, grpc_code)) => {
                            let code = rejection.code;
                            let status = Status::new(grpc_code, rejection.message.to_string());
                            break (EndReason::ProtocolViolation(code), Ending::Violation(Event::error(rejection, None), status));
                        }
                        None => break (EndReason::ConnectionLost, Ending::Quietly),
                    },
                },
            }
        };
        let transport = GrpcTransport {
            ending: Some(ending),
            gone,
            stream_dropped,
            link,
        };
        let last_words = match words {
            Ending::Violation(event, status) => Some((event, status)),
            Ending::Quietly => None,
        };
        // Boxed: the end's futures would otherwise sit in every stream's task
        // for its whole life.
        Box::pin(close_session(session, reason, last_words, transport)).await;
    }
}

/// The response stream's side of the close sequence. The stream writes
/// what is queued and the last words itself, as tonic polls it: a killed
/// session's from its link, a violation's from what it is sent here.
struct GrpcTransport {
    ending: Option<oneshot::Sender<Ending>>,
    gone: oneshot::Receiver<Infallible>,
    /// Whether `gone` has resolved (a oneshot must not be polled again).
    stream_dropped: bool,
    link: SharedLink,
}

impl Transport for GrpcTransport {
    /// The `error` event and the status the stream ends with.
    type LastWords = (Event, Status);

    async fn write_last_words(&mut self, (event, status): (Event, Status)) {
        if let Some(ending) = self.ending.take() {
            let _ = ending.send(Ending::Violation(event, status));
        }
    }

    /// Nothing to read: h2 discards what the client still sends on a
    /// stream the server has ended.
    async fn drain_input(&mut self) {}

    /// Tells the stream to finish if it was not told yet, then lets go of
    /// the queued events of a stream that has not finished in time (its
    /// client stopped reading). A killed session's last words are made when
    /// the stream is next polled, so they are still written if the client
    /// reads again.
    async fn release(mut self, _reason: EndReason) {
        if let Some(ending) = self.ending.take() {
            let _ = ending.send(Ending::Quietly);
        }
        if !self.stream_dropped
            && tokio::time::timeout(CLOSE_TIMEOUT, &mut self.gone)
                .await
                .is_err()
        {
            let mut link = lock_link(&self.link);
            while link.try_next_event().is_some() {}
        }
    }
}

/// The gRPC status a session ends with when the server closes it.
fn status_for(code: ErrorCode) -> Status {
    let grpc_code = match code.disconnect().grpc_status {
        GrpcStatus::InvalidArgument => Code::InvalidArgument,
        GrpcStatus::DeadlineExceeded => Code::DeadlineExceeded,
        GrpcStatus::PermissionDenied => Code::PermissionDenied,
        GrpcStatus::ResourceExhausted => Code::ResourceExhausted,
        GrpcStatus::Aborted => Code::Aborted,
        GrpcStatus::Internal => Code::Internal,
        GrpcStatus::Unavailable => Code::Unavailable,
    };
    Status::new(grpc_code, code.as_str())
}

/// A stream error caused by the client's bytes (rather than by the
/// connection going away): the rejection and the status the stream ends with.
///
/// Leans on tonic's internals: tonic's decoder makes the statuses for bytes
/// it cannot take (a compressed flag without `grpc-encoding`, an invalid
/// flag, a message cut short by END_STREAM, bytes prost cannot decode, a
/// message over the limit) itself, with no source error; a status from the
/// transport (an h2 or I/O error: the connection or stream is gone) carries
/// that error as its source. `tests/violations.rs` and `tests/bad_input.rs`
/// fail loudly if this stops holding.
fn violation(status: &Status) -> Option<(Rejection, Code)> {
    if std::error::Error::source(status).is_some() {
        return None;
    }
    match status.code() {
        // tonic's decode limit.
        Code::OutOfRange => Some((
            Rejection::new(ErrorCode::MessageTooLarge, "message exceeds the size limit"),
            Code::OutOfRange,
        )),
        Code::Internal => Some(undecodable()),
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

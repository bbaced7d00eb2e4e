//! The JSON WebSocket door at `/ws`: one text frame, one JSON envelope.

use std::task::Poll;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;

use super::close::{CLOSE_TIMEOUT, Transport, close_session, drain_input};
use super::{Presented, authenticate};
use crate::auth::AuthPolicy;
use crate::core::{
    Delivery, DoorKind, EndReason, ErrorCode, Event, Hub, Identity, Opening, Rejection, Request,
    Session, SessionLink,
};
use crate::protocol::envelope::{decode_frame, encode_event};

/// Settings of the WebSocket door.
#[derive(Clone, Debug)]
pub struct WsConfig {
    /// Largest accepted message (and frame), in bytes.
    pub max_message_bytes: usize,
    /// Initial read buffer per connection (tungstenite's default is 128 KiB).
    pub read_buffer_bytes: usize,
    /// Bytes buffered before a write reaches the socket (flushed per batch anyway).
    pub write_buffer_bytes: usize,
    /// How often the server pings.
    pub ping_interval: Duration,
    /// How long a ping may go unanswered before the connection counts as dead.
    pub ping_timeout: Duration,
}

/// State shared by every `/ws` connection.
#[derive(Clone, Debug)]
pub struct WsDoor {
    hub: Hub,
    config: WsConfig,
    auth: AuthPolicy,
}

/// Close codes of the JSON WebSocket door (docs/PROTOCOL.md), kept with
/// the disconnect table.
pub use crate::core::disconnect::ws_close as close_code;

/// The close code for a session the server ends with `code`.
fn close_code_for(code: ErrorCode) -> u16 {
    code.disconnect().ws_close
}

impl WsDoor {
    /// The door over `hub`.
    pub fn new(hub: Hub, config: WsConfig, auth: AuthPolicy) -> Self {
        WsDoor { hub, config, auth }
    }
}

/// The `?token=` of an upgrade request.
#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// The door's route: `GET /ws` over `hub`.
pub fn router(hub: Hub, config: WsConfig, auth: AuthPolicy) -> axum::Router {
    axum::Router::new()
        .route("/ws", axum::routing::get(upgrade))
        .with_state(WsDoor::new(hub, config, auth))
}

/// `GET /ws`: authenticates (`?token=` or `Authorization: Bearer`), then
/// upgrades and serves one session. A bad token is refused with 401 before
/// anything enters the registry.
async fn upgrade(
    State(door): State<WsDoor>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    connect_info: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let remote = connect_info.map(|axum::Extension(info)| info.0);
    let presented = Presented {
        token: query.token.as_deref(),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok()),
    };
    let identity = match authenticate(&door.auth, presented).await {
        Ok(identity) => identity,
        Err(error) => {
            return (
                StatusCode::UNAUTHORIZED,
                format!("UNAUTHENTICATED: {error}\n"),
            )
                .into_response();
        }
    };
    let config = &door.config;
    let start = Box::new(Start {
        hub: door.hub,
        identity,
        remote,
        heartbeat: Heartbeat {
            interval: config.ping_interval,
            timeout: config.ping_timeout,
        },
    });
    upgrade
        .read_buffer_size(config.read_buffer_bytes)
        .write_buffer_size(config.write_buffer_bytes)
        // The outbox bounds what can queue; this only guards a stuck socket.
        .max_write_buffer_size(config.write_buffer_bytes + 4 * config.max_message_bytes)
        .max_message_size(config.max_message_bytes)
        .max_frame_size(config.max_message_bytes)
        .on_upgrade(move |socket| serve(socket, start))
}

/// What a connection's session starts from. Boxed: the upgrade's callback
/// and the session's future each keep what they capture for the
/// connection's whole life, and a pointer is all they then keep.
struct Start {
    hub: Hub,
    identity: Option<Identity>,
    remote: Option<std::net::SocketAddr>,
    heartbeat: Heartbeat,
}

/// The server's pings: how often, and how long to wait for an answer.
#[derive(Clone, Copy, Debug)]
struct Heartbeat {
    interval: Duration,
    timeout: Duration,
}

/// A client error that ends the session, with its close code.
#[derive(Clone, Copy, Debug)]
enum Violation {
    BinaryFrame,
    InvalidUtf8,
    TooLarge,
    /// A frame that breaks RFC 6455 (unmasked, reserved bits set, a
    /// control frame over 125 bytes or fragmented, an unknown opcode, ...).
    Protocol,
}

impl Violation {
    fn rejection(self) -> Rejection {
        match self {
            Violation::BinaryFrame => {
                Rejection::bad_request("binary frames are not accepted; send JSON text frames")
            }
            Violation::InvalidUtf8 => Rejection::bad_request("text frame is not valid UTF-8"),
            Violation::TooLarge => {
                Rejection::new(ErrorCode::MessageTooLarge, "message exceeds the size limit")
            }
            Violation::Protocol => Rejection::bad_request("WebSocket protocol violation"),
        }
    }

    fn close_code(self) -> u16 {
        match self {
            Violation::BinaryFrame => close_code::UNSUPPORTED_DATA,
            Violation::InvalidUtf8 => close_code::INVALID_PAYLOAD,
            Violation::TooLarge => close_code::MESSAGE_TOO_BIG,
            Violation::Protocol => close_code::PROTOCOL_ERROR,
        }
    }
}

/// What the read side asks the loop to do after a frame.
enum Step {
    /// A request to carry out.
    Request(Request),
    Continue,
    End(EndReason),
    Violation(Violation),
}

#[allow(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments beside the locals moved out of them"
)]
fn serve(mut socket: WebSocket, start: Box<Start>) -> impl Future<Output = ()> + Send {
    // An `async` block, not an `async fn`: the block works on what it
    // captured in place, where an `async fn` would keep its arguments and
    // the locals moved out of them side by side for the task's whole life.
    async move {
        let Start {
            hub,
            identity,
            remote,
            heartbeat,
        } = *start;
        let (session, link) = hub.open(Opening {
            door: DoorKind::Ws,
            identity,
            remote_addr: remote,
            can_resume: true,
        });
        // One socket for both directions (no split, no lock between
        // halves): the loop reads and writes in turn.
        let (reason, session, last_words) = pump(&mut socket, session, link, heartbeat).await;
        // Boxed: the close sequence's futures would otherwise sit in every
        // connection's task for its whole life, sized for their largest.
        Box::pin(close_session(
            session,
            reason,
            last_words,
            WsTransport(socket),
        ))
        .await;
    }
}

/// The WebSocket's side of the close sequence.
struct WsTransport(WebSocket);

impl Transport for WsTransport {
    /// The queued events, the farewell or error, and the close frame.
    type LastWords = Vec<Message>;

    async fn write_last_words(&mut self, words: Vec<Message>) {
        for message in words {
            if self.0.feed(message).await.is_err() {
                return;
            }
        }
        let _ = self.0.flush().await;
    }

    async fn drain_input(&mut self) {
        // The closing handshake: what the client sends up to its close frame.
        drain_input(
            &mut self.0,
            None,
            |frame| !matches!(frame, Ok(message) if !matches!(message, Message::Close(_))),
        )
        .await;
    }

    async fn release(mut self, reason: EndReason) {
        if reason == EndReason::ClientClosed {
            // Send the close frame that answers the client's (queued by tungstenite).
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.0.flush()).await;
        }
    }
}

/// Runs the session until it ends; returns why, and the frames to send
/// before the connection closes when the server ended it.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments beside the locals moved out of them"
)]
fn pump<S>(
    socket: &mut S,
    mut session: Session,
    mut link: SessionLink,
    heartbeat: Heartbeat,
) -> impl Future<Output = (EndReason, Session, Option<Vec<Message>>)>
where
    S: futures_util::Sink<Message>
        + futures_util::Stream<Item = Result<Message, axum::Error>>
        + Unpin,
{
    // An `async` block for the reason given in `serve`.
    async move {
        let start = tokio::time::Instant::now() + heartbeat.interval;
        let mut pings = tokio::time::interval_at(start, heartbeat.interval);
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Set when a ping is out; anything heard from the client clears it.
        let mut answer_due: Option<tokio::time::Instant> = None;
        // Made once: a kill wakes it, whichever branch the loop is in.
        let killed = link.killed();
        tokio::pin!(killed);
        loop {
            let deadline = answer_due;
            tokio::select! {
                biased;
                () = &mut killed => {
                    let words = link.last_words();
                    let code = words.code;
                    let mut last_words: Vec<Message> = words.queued.iter().map(text_frame).collect();
                    if let Some(farewell) = &words.farewell {
                        last_words.push(Message::Text(encode_event(farewell, None).into()));
                    }
                    last_words.push(close(close_code_for(code), code.as_str()));
                    return (EndReason::Closed(code), session, Some(last_words));
                }
                event = link.next_event() => {
                    tokio::select! {
                        biased;
                        // A write stuck on a full socket must not hide a kill:
                        // the loop's first branch handles it.
                        () = &mut killed => {}
                        written = write_batch(socket, &mut link, event) => {
                            if written.is_err() {
                                return (EndReason::ConnectionLost, session, None);
                            }
                        }
                    }
                }
                // Before the heartbeat's timers: while frames keep arriving the
                // client is evidently alive, and the timers are polled (and
                // armed) whenever it pauses, instead of on every turn.
                frame = socket.next() => {
                    // Anything from the client proves the link alive.
                    answer_due = None;
                    // Frames that arrived together are handled together: one
                    // turn of the loop (and of its other branches) per batch.
                    let mut frame = frame;
                    for turn in 1..=READ_BATCH {
                        match read_frame(frame, &session) {
                            Step::Request(request) => session.handle(request).await,
                            Step::Continue => {}
                            Step::End(reason) => return (reason, session, None),
                            Step::Violation(violation) => {
                                let last_words = violation_last_words(&mut link, violation);
                                return (EndReason::ProtocolViolation(violation.rejection().code), session, Some(last_words));
                            }
                        }
                        // Kills and events to write come first, as in the loop.
                        if turn == READ_BATCH || link.has_queued_events() || link.is_killed() {
                            break;
                        }
                        match std::future::poll_fn(|cx| Poll::Ready(socket.poll_next_unpin(cx))).await {
                            Poll::Ready(next) => frame = next,
                            Poll::Pending => break,
                        }
                    }
                },
                () = async { if let Some(at) = deadline { tokio::time::sleep_until(at).await } }, if deadline.is_some() => {
                    // The heartbeat failed: the link is dead, an abrupt end.
                    return (EndReason::ConnectionLost, session, None);
                }
                _ = pings.tick() => {
                    if answer_due.is_none() {
                        answer_due = Some(tokio::time::Instant::now() + heartbeat.timeout);
                        tokio::select! {
                            biased;
                            () = &mut killed => {}
                            sent = socket.send(Message::Ping(Bytes::new())) => {
                                if sent.is_err() {
                                    return (EndReason::ConnectionLost, session, None);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Frames handled in one turn of the session loop while the session has
/// nothing to write and is not killed; then its other work (pings, a
/// stalled client's backlog) gets a turn.
const READ_BATCH: usize = 16;

/// What the session already queued, then the error, then the close.
fn violation_last_words(link: &mut SessionLink, violation: Violation) -> Vec<Message> {
    let rejection = violation.rejection();
    let code = rejection.code;
    let mut last_words = Vec::new();
    while let Some(delivery) = link.try_next_event() {
        last_words.push(text_frame(&delivery));
    }
    last_words.push(Message::Text(
        encode_event(&Event::error(rejection, None), None).into(),
    ));
    last_words.push(close(violation.close_code(), code.as_str()));
    last_words
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

fn text_frame(delivery: &Delivery) -> Message {
    Message::Text(encode_event(&delivery.event, delivery.seq).into())
}

/// Writes `first` and everything else already queued, then flushes once.
async fn write_batch<S>(
    sink: &mut S,
    link: &mut SessionLink,
    first: Delivery,
) -> Result<(), S::Error>
where
    S: futures_util::Sink<Message> + Unpin,
{
    sink.feed(text_frame(&first)).await?;
    while let Some(delivery) = link.try_next_event() {
        sink.feed(text_frame(&delivery)).await?;
    }
    sink.flush().await
}

/// What to do with a frame from the client. Not `async`: the loop awaits
/// the request itself, so that its task holds one future for it, not a
/// wrapper around it as well.
fn read_frame(frame: Option<Result<Message, axum::Error>>, session: &Session) -> Step {
    match frame {
        Some(Ok(Message::Text(text))) => match decode_frame(text.as_str()) {
            Ok(request) => Step::Request(request),
            Err(failure) => {
                session.reject(failure.id, failure.rejection);
                Step::Continue
            }
        },
        Some(Ok(Message::Binary(_))) => Step::Violation(Violation::BinaryFrame),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Step::Continue,
        Some(Ok(Message::Close(_))) => Step::End(EndReason::ClientClosed),
        Some(Err(error)) => classify(error),
        None => Step::End(EndReason::ConnectionLost),
    }
}

/// Maps a read error to how the session ends: the client's bytes breaking
/// the protocol end it at once as a violation; the connection going away
/// (an I/O error, EOF without a close frame) is an abrupt end.
///
/// Leans on axum's internals: axum wraps tungstenite's error, which is
/// downcast here. That only works while this crate's tokio-tungstenite is
/// the one axum uses (Cargo.toml pins the same version; the test
/// `tests/bad_input.rs` `ws_protocol_violations_close_with_1002` fails loudly
/// if it no longer is).
fn classify(error: axum::Error) -> Step {
    use tungstenite::error::ProtocolError;
    let inner = error.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => Step::Violation(Violation::TooLarge),
        Some(tungstenite::Error::Utf8(_)) => Step::Violation(Violation::InvalidUtf8),
        Some(tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => {
            Step::End(EndReason::ConnectionLost)
        }
        Some(tungstenite::Error::Protocol(_)) => Step::Violation(Violation::Protocol),
        _ => Step::End(EndReason::ConnectionLost),
    }
}

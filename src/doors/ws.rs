//! The JSON WebSocket door at `/ws`: one text frame, one JSON envelope.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite;

use super::json::{decode_frame, encode_event};
use crate::core::{
    Delivery, DoorKind, EndReason, ErrorCode, Event, Hub, Rejection, Session, SessionLink,
};

/// Settings of the WebSocket door.
#[derive(Clone, Debug)]
pub struct WsConfig {
    /// Largest accepted message (and frame), in bytes.
    pub max_message_bytes: usize,
    /// Initial read buffer per connection (tungstenite's default is 128 KiB).
    pub read_buffer_bytes: usize,
    /// Bytes buffered before a write reaches the socket (flushed per batch anyway).
    pub write_buffer_bytes: usize,
}

/// State shared by every `/ws` connection.
#[derive(Clone, Debug)]
pub struct WsDoor {
    hub: Hub,
    config: WsConfig,
}

/// Close codes of the JSON WebSocket door (docs/PROTOCOL.md).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// A binary frame on the JSON door.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A text frame that is not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A message over the size limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// An unexpected server error.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// A newer session registered the same (uid, role).
    pub const REPLACED: u16 = 4001;
    /// The session could not keep up with its events.
    pub const SLOW_CONSUMER: u16 = 4002;
}

/// The close code for a session the server ends with `code`.
fn close_code_for(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::Replaced => close_code::REPLACED,
        ErrorCode::SlowConsumer => close_code::SLOW_CONSUMER,
        ErrorCode::ShuttingDown => close_code::GOING_AWAY,
        ErrorCode::MessageTooLarge => close_code::MESSAGE_TOO_BIG,
        _ => close_code::INTERNAL_ERROR,
    }
}

impl WsDoor {
    /// The door over `hub`.
    pub fn new(hub: Hub, config: WsConfig) -> Self {
        WsDoor { hub, config }
    }
}

/// `GET /ws`: upgrades and serves one session.
pub async fn upgrade(State(door): State<WsDoor>, upgrade: WebSocketUpgrade) -> Response {
    let config = &door.config;
    upgrade
        .read_buffer_size(config.read_buffer_bytes)
        .write_buffer_size(config.write_buffer_bytes)
        // The outbox bounds what can queue; this only guards a stuck socket.
        .max_write_buffer_size(config.write_buffer_bytes + 4 * config.max_message_bytes)
        .max_message_size(config.max_message_bytes)
        .max_frame_size(config.max_message_bytes)
        .on_upgrade(move |socket| serve(socket, door.hub))
}

/// How long the door spends on the closing handshake of a session it ends.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A client error that ends the session, with its close code.
#[derive(Clone, Copy, Debug)]
enum Violation {
    BinaryFrame,
    InvalidUtf8,
    TooLarge,
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
        }
    }

    fn close_code(self) -> u16 {
        match self {
            Violation::BinaryFrame => close_code::UNSUPPORTED_DATA,
            Violation::InvalidUtf8 => close_code::INVALID_PAYLOAD,
            Violation::TooLarge => close_code::MESSAGE_TOO_BIG,
        }
    }
}

/// What the read side asks the loop to do after a frame.
enum Step {
    Continue,
    End(EndReason),
    Violation(Violation),
}

async fn serve(socket: WebSocket, hub: Hub) {
    let (session, link) = hub.open(DoorKind::WebSocket);
    let (mut sink, mut stream) = socket.split();
    let (reason, session, last_words) = pump(&mut sink, &mut stream, session, link).await;
    // Free the role and tell the peer first: a stuck socket must not delay it.
    session.end(reason).await;
    if !last_words.is_empty() {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            for message in last_words {
                if sink.feed(message).await.is_err() {
                    return;
                }
            }
            let _ = sink.flush().await;
        })
        .await;
    }
}

/// Runs the session until it ends; returns why, and the frames to send
/// before the connection closes.
async fn pump<S, R>(
    sink: &mut S,
    stream: &mut R,
    mut session: Session,
    mut link: SessionLink,
) -> (EndReason, Session, Vec<Message>)
where
    S: futures_util::Sink<Message> + Unpin,
    R: futures_util::Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    loop {
        tokio::select! {
            biased;
            () = link.killed() => {
                let code = link.kill_reason().unwrap_or(ErrorCode::ShuttingDown);
                let last_words = vec![
                    Message::Text(encode_event(&Event::farewell(code), None).into()),
                    close(close_code_for(code), code.as_str()),
                ];
                return (EndReason::Closed(code), session, last_words);
            }
            event = link.next_event() => {
                let Some(event) = event else {
                    return (EndReason::ConnectionLost, session, Vec::new());
                };
                let killed = link.killed();
                tokio::select! {
                    biased;
                    // A write stuck on a full socket must not hide a kill:
                    // the loop's first branch handles it.
                    () = killed => {}
                    written = write_batch(sink, &mut link, event) => {
                        if written.is_err() {
                            return (EndReason::ConnectionLost, session, Vec::new());
                        }
                    }
                }
            }
            frame = stream.next() => match read_frame(frame, &mut session).await {
                Step::Continue => {}
                Step::End(reason) => return (reason, session, Vec::new()),
                Step::Violation(violation) => {
                    let rejection = violation.rejection();
                    let code = rejection.code;
                    // What the session already queued, then the error, then the close.
                    let mut last_words = Vec::new();
                    while let Some(delivery) = link.try_next_event() {
                        last_words.push(text_frame(&delivery));
                    }
                    last_words.push(Message::Text(encode_event(&Event::error(rejection, None), None).into()));
                    last_words.push(close(violation.close_code(), code.as_str()));
                    return (EndReason::ProtocolViolation(code), session, last_words);
                }
            },
        }
    }
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

async fn read_frame(frame: Option<Result<Message, axum::Error>>, session: &mut Session) -> Step {
    match frame {
        Some(Ok(Message::Text(text))) => {
            match decode_frame(text.as_str()) {
                Ok(request) => session.handle(request).await,
                Err(failure) => session.reject(failure.id, failure.rejection),
            }
            Step::Continue
        }
        Some(Ok(Message::Binary(_))) => Step::Violation(Violation::BinaryFrame),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Step::Continue,
        Some(Ok(Message::Close(_))) => Step::End(EndReason::ClientClosed),
        Some(Err(error)) => classify(error),
        None => Step::End(EndReason::ConnectionLost),
    }
}

/// Maps a read error to how the session ends.
fn classify(error: axum::Error) -> Step {
    let inner = error.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => Step::Violation(Violation::TooLarge),
        Some(tungstenite::Error::Utf8(_)) => Step::Violation(Violation::InvalidUtf8),
        _ => Step::End(EndReason::ConnectionLost),
    }
}

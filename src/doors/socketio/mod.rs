//! The Socket.IO door at `/socket.io/` (socketioxide): the seed server's
//! clients, Socket.IO 2.x (Engine.IO 3) and 3.x/4.x (Engine.IO 4), over
//! websocket or HTTP long-polling, unchanged.
//!
//! socketioxide runs every closure it is given as an event handler as its
//! own task, which would lose the order of a client's events (and costs a
//! task per packet). So the door's fallback handler is a
//! [`MessageHandler`] of its own ([`EnqueuePacket`]), which socketioxide
//! calls synchronously in packet order; it hands each packet to the
//! session's one task.

use std::sync::Arc;
use std::time::Duration;

use socketioxide::SocketIo;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::{ConnectHandler, FromMessageParts, MessageHandler};
use socketioxide::socket::{DisconnectReason, Socket};
use socketioxide_core::Value as PacketValue;

use super::close::{Transport, close_session, drain_input};
use crate::auth::{AuthError, AuthPolicy};
use crate::core::{
    DoorKind, EndReason, ErrorCode, Event, Hub, Identity, LastWords, Opening, Rejection, Request,
    Session, SessionLink,
};
use crate::sync::outbox::{Outbox, PushError};

use super::Presented;
use super::polling::{self, PollingGuard, PollingLimits};

#[cfg(test)]
mod tests;
mod wire;

use wire::{AckReply, PendingAcks, decode_packet, emit, emit_unsequenced, wants_resumption};

/// Packets a session may have waiting for its task before the client is
/// told to slow down.
const INBOX_CAPACITY: usize = 256;

/// Settings of the Socket.IO door.
#[derive(Clone, Debug)]
pub struct SocketIoConfig {
    /// Largest accepted message, in bytes.
    pub max_message_bytes: usize,
    /// Engine.IO ping interval.
    pub ping_interval: Duration,
    /// How long a ping may go unanswered before the connection is dropped.
    pub ping_timeout: Duration,
    /// Packets socketioxide buffers per socket before an emit fails (the
    /// session is then closed as a slow consumer).
    pub max_buffered_packets: usize,
    /// Initial websocket read buffer per connection.
    pub read_buffer_bytes: usize,
    /// Bounds on handshakes, long-polling sessions and POST bodies.
    pub polling: PollingLimits,
}

/// The path Socket.IO clients use by default.
pub const PATH: &str = "/socket.io/";

/// A router serving Socket.IO at [`PATH`], namespace `/`, over `hub`.
/// With authentication on, a connection must present its token in the
/// handshake (`auth: {token}`, Socket.IO 3+) or as the `token` query
/// parameter (any version); otherwise the namespace refuses it.
pub fn router(hub: Hub, config: &SocketIoConfig, auth: AuthPolicy) -> axum::Router {
    let max_message = u64::try_from(config.max_message_bytes).unwrap_or(u64::MAX);
    let (service, io) = SocketIo::builder()
        .ping_interval(config.ping_interval)
        .ping_timeout(config.ping_timeout)
        .max_payload(max_message)
        .ws_max_message_size(config.max_message_bytes)
        .ws_max_frame_size(config.max_message_bytes)
        .ws_read_buffer_size(config.read_buffer_bytes)
        .max_buffer_size(config.max_buffered_packets)
        .build_svc();
    let connect = move |socket: SocketRef| {
        let hub = hub.clone();
        async move { accept(socket, hub) }
    };
    // socketioxide sends the namespace's CONNECT packet after its
    // middlewares and before the connect handler, which it spawns: a
    // client that emits the moment it is connected would find no handler
    // and its packet would be dropped. So the middleware, once the client
    // is let in, sets up the packet queue and the handlers; the session's
    // task, started by the connect handler, finds the packets in order.
    let authenticate = move |socket: SocketRef, TryData(handshake): TryData<serde_json::Value>| {
        let auth = auth.clone();
        async move {
            authenticate(&socket, handshake.ok(), &auth).await?;
            listen(&socket);
            Ok::<(), Refused>(())
        }
    };
    io.ns("/", connect.with(authenticate));
    axum::Router::new()
        .route_service(PATH, service)
        .layer(axum::middleware::from_fn_with_state(
            PollingGuard::new(config.polling),
            polling::guard,
        ))
}

/// Who a Socket.IO connection authenticated as, kept in its extensions.
#[derive(Clone)]
struct Authenticated(Identity);

/// A refused Socket.IO connection (the client's `connect_error` message).
#[derive(Debug)]
struct Refused(AuthError);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UNAUTHENTICATED: {}", self.0)
    }
}

/// The connect middleware: checks the handshake's token.
async fn authenticate(
    socket: &SocketRef,
    handshake: Option<serde_json::Value>,
    auth: &AuthPolicy,
) -> Result<(), Refused> {
    let from_handshake = handshake
        .as_ref()
        .and_then(|payload| payload.get("token"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let token = from_handshake.or_else(|| query_parameter(socket, "token"));
    let presented = Presented {
        token: token.as_deref(),
        authorization: None,
    };
    if let Some(identity) = super::authenticate(auth, presented)
        .await
        .map_err(Refused)?
    {
        socket.extensions.insert(Authenticated(identity));
    }
    Ok(())
}

/// A query parameter of the handshake request, percent-decoded.
fn query_parameter<A: socketioxide::adapter::Adapter>(
    socket: &Socket<A>,
    name: &str,
) -> Option<String> {
    let query = socket.req_parts().uri.query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// What the socketioxide callbacks hand to a session's task.
enum Inbound {
    /// An event packet, with the client's acknowledgement callback if any.
    Packet {
        value: PacketValue,
        ack: Option<AckSender>,
    },
    /// The socket disconnected.
    Disconnected(DisconnectReason),
    /// socketioxide dropped the socket's callbacks without a disconnect.
    Gone,
}

/// A socket's queue of packets for its session's task: the core's outbox
/// type (empty until used, where a channel allocates its first block of
/// slots for every connection).
type PacketQueue = Outbox<Inbound>;

/// Where a socket's packets go: stored in the socket's extensions (and
/// held by its disconnect callback). When socketioxide drops the last one,
/// the task is told.
#[derive(Clone)]
struct Inbox(Arc<InboxSender>);

struct InboxSender(Arc<PacketQueue>);

impl Drop for InboxSender {
    fn drop(&mut self) {
        let _ = self.0.push_last(Inbound::Gone);
    }
}

/// The session task's end of the queue: closing it drops what is still
/// queued (whose acknowledgement callbacks hold the socket).
struct PacketReader(Arc<PacketQueue>);

impl Drop for PacketReader {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The queue a socket's session task will read, kept in the socket's
/// extensions from the connect middleware until the task starts.
#[derive(Clone)]
struct QueuedPackets(Arc<PacketQueue>);

/// Called by the connect middleware once the client is let in, before
/// socketioxide answers CONNECT: from here on every packet and the
/// disconnect are queued for the session's task.
fn listen(socket: &SocketRef) {
    let queue = Arc::new(PacketQueue::new(INBOX_CAPACITY));
    let inbox = Inbox(Arc::new(InboxSender(Arc::clone(&queue))));
    socket.extensions.insert(QueuedPackets(queue));
    socket.extensions.insert(inbox.clone());
    socket.on_fallback(EnqueuePacket);
    socket.on_disconnect(async move |reason: DisconnectReason| {
        // Queued after every packet that arrived before the disconnect.
        let Inbox(sender) = &inbox;
        let _ = sender.0.push_last(Inbound::Disconnected(reason));
    });
}

/// The connect handler: opens the session and starts its task, which reads
/// what the socket has queued since the middleware's [`listen`].
fn accept(socket: SocketRef, hub: Hub) {
    let Some(QueuedPackets(queue)) = socket.extensions.remove::<QueuedPackets>() else {
        // Only a socket the middleware let in reaches this handler.
        tracing::error!("a Socket.IO socket connected without its packet queue");
        let _ = socket.disconnect();
        return;
    };
    let identity = socket
        .extensions
        .get::<Authenticated>()
        .map(|Authenticated(identity)| identity);
    let remote = crate::doors::remote_addr(&socket.req_parts().extensions);
    let (session, link) = hub.open(Opening {
        door: DoorKind::SocketIo,
        identity,
        remote_addr: remote,
        // A seed client (no sequence numbers asked) cannot resume.
        can_resume: wants_resumption(&socket),
    });
    tokio::spawn(serve(socket, session, link, PacketReader(queue)));
}

/// The handler of every event packet: queues it for the session task, in
/// arrival order, where socketioxide dispatches it (no task per packet).
#[derive(Clone, Copy, Debug)]
pub struct EnqueuePacket;

impl MessageHandler<LocalAdapter, EnqueuePacket> for EnqueuePacket {
    fn call(&self, socket: Arc<Socket<LocalAdapter>>, mut value: PacketValue, ack_id: Option<i64>) {
        let Some(Inbox(inbox)) = socket.extensions.get::<Inbox>() else {
            return;
        };
        let ack = match ack_id {
            Some(_) => AckSender::from_message_parts(&socket, &mut value, &ack_id).ok(),
            None => None,
        };
        if let Err(PushError::Full(Inbound::Packet { ack, .. })) =
            inbox.0.push(Inbound::Packet { value, ack })
        {
            // The client sends faster than its session is served: refuse,
            // never drop silently.
            let rejection = Rejection::new(
                ErrorCode::RateLimited,
                "too many events in flight; this one was not processed",
            );
            match ack {
                Some(ack) => {
                    let _ = ack.send(&AckReply::failed(&rejection));
                }
                None => {
                    let event = Event::error(rejection, None);
                    let _ = emit_unsequenced(&socket, &event);
                }
            }
        }
    }
}

/// Serves one socket's session. An `async` block, not an `async fn`: the
/// block works on what it captured in place, where an `async fn` would keep
/// its arguments and the locals moved out of them side by side for the
/// task's whole life.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments beside the locals moved out of them"
)]
fn serve(
    socket: SocketRef,
    session: Session,
    link: SessionLink,
    packets: PacketReader,
) -> impl Future<Output = ()> + Send {
    async move {
        let (reason, session, last_words) = pump(&socket, session, link, &packets.0).await;
        let transport = SocketIoTransport {
            socket,
            packets,
            spoke: false,
            drains: false,
        };
        // Boxed: the close sequence's futures would otherwise sit in every
        // connection's task for its whole life.
        Box::pin(close_session(session, reason, last_words, transport)).await;
    }
}

/// A killed session's last words on this door: the queued events go out
/// as in the session (answers through their acknowledgement callbacks),
/// then the farewell, unsequenced.
struct SocketIoLastWords {
    words: LastWords,
    acks: PendingAcks,
    link: SessionLink,
    with_seq: bool,
}

/// The Socket.IO socket's side of the close sequence.
struct SocketIoTransport {
    socket: SocketRef,
    packets: PacketReader,
    /// Whether last words were said: only then does the server disconnect
    /// the socket (otherwise the client or socketioxide already did).
    spoke: bool,
    /// Whether the client's input is drained after the last words.
    drains: bool,
}

impl Transport for SocketIoTransport {
    type LastWords = SocketIoLastWords;

    async fn write_last_words(&mut self, last: SocketIoLastWords) {
        let SocketIoLastWords {
            words,
            mut acks,
            link,
            with_seq,
        } = last;
        self.spoke = true;
        for event in &words.queued {
            if emit(&self.socket, &mut acks, &link, event, with_seq)
                .await
                .is_err()
            {
                break;
            }
        }
        if let Some(farewell) = &words.farewell {
            let _ = emit_unsequenced(&self.socket, farewell);
        }
        // Not while the server shuts down: it closes every transport.
        self.drains = words.code != ErrorCode::ShuttingDown;
    }

    async fn drain_input(&mut self) {
        if !self.drains {
            return;
        }
        // What the client still sends, until it pauses.
        let inbound = futures_util::stream::unfold(&self.packets.0, |queue| async move {
            Some((queue.pop().await, queue))
        });
        drain_input(inbound, Some(CLIENT_PAUSE), |inbound| {
            !matches!(inbound, Inbound::Packet { .. })
        })
        .await;
    }

    async fn release(self, _reason: EndReason) {
        if self.spoke {
            let _ = self.socket.disconnect();
        }
    }
}

/// A pause in the client's packets that ends the drain.
const CLIENT_PAUSE: Duration = Duration::from_millis(20);

/// Runs the session until it ends (an `async` block, as in `serve`).
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments beside the locals moved out of them"
)]
fn pump<'a>(
    socket: &'a SocketRef,
    mut session: Session,
    mut link: SessionLink,
    packets: &'a PacketQueue,
) -> impl Future<Output = (EndReason, Session, Option<SocketIoLastWords>)> + Send + 'a {
    async move {
        let mut acks = PendingAcks::default();
        let with_seq = wants_resumption(socket);
        // Made once: a kill wakes it, whichever branch the loop is in.
        let killed = link.killed();
        tokio::pin!(killed);
        loop {
            tokio::select! {
                biased;
                () = &mut killed => {
                    let words = link.last_words();
                    let reason = EndReason::Closed(words.code);
                    return (reason, session, Some(SocketIoLastWords { words, acks, link, with_seq }));
                }
                event = link.next_event() => {
                    if emit(socket, &mut acks, &link, &event, with_seq).await.is_err() {
                        // Killed while waiting (the first branch says why) or
                        // the socket is closed: its disconnect callback says
                        // how, and may not have been queued yet (a client's
                        // disconnect packet racing this write is a clean end).
                        if !link.is_killed() {
                            // Boxed: rare, and large.
                            let reason = Box::pin(disconnect_reason(&mut session, &mut acks, packets, with_seq)).await;
                            return (reason, session, None);
                        }
                    }
                }
                inbound = packets.pop() => match inbound {
                    Inbound::Packet { value, ack } => {
                        handle_packet(&mut session, &mut acks, &value, ack, with_seq).await;
                    }
                    Inbound::Disconnected(reason) => {
                        return (end_reason(reason), session, None);
                    }
                    Inbound::Gone => return (EndReason::ConnectionLost, session, None),
                },
            }
        }
    }
}

/// Decodes one event packet and hands it to the session (or refuses it).
async fn handle_packet(
    session: &mut Session,
    acks: &mut PendingAcks,
    value: &PacketValue,
    ack: Option<AckSender>,
    with_seq: bool,
) {
    match decode_packet(value, with_seq) {
        Ok((command, client_id)) => {
            let request = Request {
                id: acks.track(ack, client_id),
                command,
                client_chosen_id: client_id.is_some(),
            };
            session.handle(request).await;
        }
        Err(rejection) => session.reject(acks.track(ack, None), rejection),
    }
}

/// How long a closed socket's disconnect callback is waited for.
const DISCONNECT_WAIT: Duration = Duration::from_secs(1);

/// Why a socket that can no longer be written to closed: the packets that
/// arrived before its disconnect are still handled, then its disconnect
/// reason ends the session ([`EndReason::ConnectionLost`] if socketioxide
/// never says).
async fn disconnect_reason(
    session: &mut Session,
    acks: &mut PendingAcks,
    packets: &PacketQueue,
    with_seq: bool,
) -> EndReason {
    let waited = tokio::time::timeout(DISCONNECT_WAIT, async {
        loop {
            match packets.pop().await {
                Inbound::Packet { value, ack } => {
                    handle_packet(session, acks, &value, ack, with_seq).await;
                }
                Inbound::Disconnected(reason) => return end_reason(reason),
                Inbound::Gone => return EndReason::ConnectionLost,
            }
        }
    })
    .await;
    waited.unwrap_or(EndReason::ConnectionLost)
}

fn end_reason(reason: DisconnectReason) -> EndReason {
    match reason {
        // A disconnect packet, or the client closing its transport.
        DisconnectReason::ClientNSDisconnect | DisconnectReason::TransportClose => {
            EndReason::ClientClosed
        }
        DisconnectReason::PacketParsingError => EndReason::ProtocolViolation(ErrorCode::BadRequest),
        DisconnectReason::ClosingServer => EndReason::Closed(ErrorCode::ShuttingDown),
        _ => EndReason::ConnectionLost,
    }
}

//! What a gRPC relay costs on the `h2` crate alone, without hyper's and
//! tonic's server machinery: one task per connection that accepts its
//! streams, reads their DATA frames, decodes each `ClientEvent`, relays a
//! `message` to the peer's connection, and writes the events queued for
//! its own streams, all in the same wake-up — the shape of the WebSocket
//! door (one task per connection, one queue hop to the peer's task).
//!
//! The gateway's gRPC door serves `Connect` through hyper's HTTP/2 server
//! and tonic (`grpc_floor` is that stack doing nothing but relaying): a
//! relay there passes through four tasks (the sender's connection task, its
//! stream's request side, the peer's stream task that polls the response
//! body, the peer's connection task). This floor measures what a lean path
//! over `h2` would leave (docs/bench/notes.md, issue 35). Like the other
//! floors it is not a server: no trailers, no statuses, no flow-control
//! bound on the send side, no keep-alive; it speaks just enough for
//! `signalgate-bench --web-door grpc --app-door grpc`. A connection whose
//! first bytes are not the HTTP/2 preface is served by hyper over HTTP/1,
//! for `GET /relayed`.
//!
//! ```text
//! cargo run --release --example grpc_h2_floor -- 127.0.0.1:3193
//! ```

#![forbid(unsafe_code)]

mod floor;

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};

use axum::http::{HeaderValue, Response};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use h2::server::{Connection, SendResponse};
use h2::{RecvStream, SendStream};
use hyper_util::rt::TokioExecutor;
use prost::Message;
use signalgate::proto::server::{
    ClientEvent, Registered, ServerEvent, SyncFrom, Welcome, client_event, server_event,
};
use tokio::net::TcpStream;

/// The HTTP/2 connection preface's first bytes.
const PREFACE_START: &[u8] = b"PRI";

/// Events queued for one connection's streams, and its task's waker.
#[derive(Default)]
struct Inbox {
    queue: Mutex<VecDeque<(usize, ServerEvent)>>,
    waker: AtomicWaker,
}

impl Inbox {
    fn push(&self, stream: usize, event: ServerEvent) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back((stream, event));
        self.waker.wake();
    }
}

/// Where a session's events go: its connection's inbox and its stream.
#[derive(Clone)]
struct Address {
    inbox: Arc<Inbox>,
    stream: usize,
}

/// The peer's address, set once the second session of the uid registers.
type PeerSlot = Arc<OnceLock<Address>>;

/// Sessions waiting for their peer, by uid.
type Waiting = Arc<Mutex<HashMap<String, (Address, PeerSlot)>>>;

/// On the gateway's runtime (`signalgate::server::runtime`), so that the
/// floor schedules its tasks as the door does.
fn main() -> std::io::Result<()> {
    signalgate::server::runtime::runtime()?.block_on(run())
}

async fn run() -> std::io::Result<()> {
    let waiting = Waiting::default();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    floor::serve(
        floor::address(3193),
        builder,
        axum::Router::new(),
        move |socket, builder, router| {
            let waiting = Arc::clone(&waiting);
            async move {
                let mut start = [0u8; 3];
                if socket.peek(&mut start).await.ok() != Some(3) || start != PREFACE_START {
                    floor::serve_one(socket, builder, router).await;
                } else if let Ok(connection) = h2::server::handshake(socket).await {
                    serve(connection, waiting).await;
                }
            }
        },
    )
    .await
}

/// One `Connect` stream on a connection.
struct Session {
    recv: RecvStream,
    send: SendStream<Bytes>,
    /// Bytes read and not yet a whole gRPC message.
    buffer: BytesMut,
    peer: PeerSlot,
    ended: bool,
}

/// Serves one HTTP/2 connection in this task until it ends.
async fn serve(mut connection: Connection<TcpStream, Bytes>, waiting: Waiting) {
    let inbox = Arc::new(Inbox::default());
    let mut sessions: Vec<Option<Session>> = Vec::new();
    poll_fn(|cx| {
        inbox.waker.register(cx.waker());
        loop {
            let mut progress = false;
            // Drive the connection: read frames, flush what was queued.
            loop {
                match connection.poll_accept(cx) {
                    Poll::Ready(Some(Ok((request, respond)))) => {
                        let recv = request.into_body();
                        if let Some(session) = open(recv, respond, &inbox, sessions.len()) {
                            sessions.push(Some(session));
                        }
                        progress = true;
                    }
                    Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(()),
                    Poll::Pending => break,
                }
            }
            for (index, slot) in sessions.iter_mut().enumerate() {
                let Some(session) = slot else {
                    continue;
                };
                progress |= read(session, cx, &inbox, index, &waiting);
                if session.ended {
                    *slot = None;
                }
            }
            let queued: Vec<_> = inbox
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .drain(..)
                .collect();
            for (index, event) in queued {
                if let Some(Some(session)) = sessions.get_mut(index) {
                    let _ = session.send.send_data(frame(&event), false);
                    progress = true;
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
    })
    .await;
}

/// Answers a new stream's headers and queues its `welcome`.
fn open(
    recv: RecvStream,
    mut respond: SendResponse<Bytes>,
    inbox: &Arc<Inbox>,
    index: usize,
) -> Option<Session> {
    let mut response = Response::new(());
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    let send = respond.send_response(response, false).ok()?;
    let welcome = server_event::Event::Welcome(Welcome {
        message: "Welcome!".to_owned(),
        id: "floor".to_owned(),
        resume_token: String::new(),
    });
    inbox
        .queue
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push_back((index, event(welcome)));
    Some(Session {
        recv,
        send,
        buffer: BytesMut::new(),
        peer: PeerSlot::default(),
        ended: false,
    })
}

/// Reads what has arrived on one stream and handles every whole message in
/// it. Returns whether anything was read.
fn read(
    session: &mut Session,
    cx: &mut Context<'_>,
    inbox: &Arc<Inbox>,
    index: usize,
    waiting: &Waiting,
) -> bool {
    let mut progress = false;
    loop {
        match session.recv.poll_data(cx) {
            Poll::Ready(Some(Ok(data))) => {
                let _ = session.recv.flow_control().release_capacity(data.len());
                session.buffer.extend_from_slice(&data);
                progress = true;
            }
            Poll::Ready(Some(Err(_)) | None) => {
                session.ended = true;
                break;
            }
            Poll::Pending => break,
        }
    }
    // Each gRPC message: a compressed flag, a 4-byte length, the message.
    while session.buffer.len() >= 5 {
        let length = u32::from_be_bytes([
            session.buffer[1],
            session.buffer[2],
            session.buffer[3],
            session.buffer[4],
        ]) as usize;
        if session.buffer.len() < 5 + length {
            break;
        }
        session.buffer.advance(5);
        let message = session.buffer.split_to(length).freeze();
        if let Ok(message) = ClientEvent::decode(message) {
            handle(session, message, inbox, index, waiting);
        }
    }
    progress
}

/// One `ClientEvent`: pairs the session, or relays a `message` to its peer.
fn handle(
    session: &mut Session,
    message: ClientEvent,
    inbox: &Arc<Inbox>,
    index: usize,
    waiting: &Waiting,
) {
    match message.event {
        Some(client_event::Event::Message(value)) => {
            if let Some(peer) = session.peer.get() {
                peer.inbox
                    .push(peer.stream, event(server_event::Event::Message(value)));
                floor::relayed();
            }
        }
        Some(client_event::Event::Register(register)) => {
            let own = Address {
                inbox: Arc::clone(inbox),
                stream: index,
            };
            let first = {
                let mut map = waiting.lock().unwrap_or_else(PoisonError::into_inner);
                let first = map.remove(&register.uid);
                if first.is_none() {
                    map.insert(
                        register.uid.clone(),
                        (own.clone(), Arc::clone(&session.peer)),
                    );
                }
                first
            };
            let reply = match first {
                None => server_event::Event::Registered(Registered {
                    uid: register.uid,
                    role: register.role,
                    peer_present: false,
                    ..Registered::default()
                }),
                Some((first, first_slot)) => {
                    let _ = first_slot.set(own);
                    let _ = session.peer.set(first);
                    server_event::Event::Syncfrom(SyncFrom {})
                }
            };
            inbox
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_back((index, event(reply)));
        }
        _ => {}
    }
}

fn event(event: server_event::Event) -> ServerEvent {
    ServerEvent {
        seq: 0,
        event: Some(event),
    }
}

/// A `ServerEvent` as one gRPC message: not compressed, its length, its bytes.
fn frame(event: &ServerEvent) -> Bytes {
    let length = event.encoded_len();
    let mut bytes = BytesMut::with_capacity(5 + length);
    bytes.put_u8(0);
    bytes.put_u32(length as u32);
    let _ = event.encode(&mut bytes);
    bytes.freeze()
}

//! The floor under the WebSocket door's cost per relay: the same stack
//! (tokio, hyper-util's connection builder with upgrades, axum's
//! WebSocket with the gateway's buffer sizes, one task per connection,
//! one queue hop to the peer's task, batched writes) doing nothing but
//! relaying. It checks no JSON, keeps no sequence numbers, no bounded
//! outbox, no metrics, no heartbeat, no kill switch and no registry
//! beyond a map from uid to the first session.
//!
//! It is not a server: it exists so that `scripts/bench` can measure what
//! a relay costs before signalgate's own work (docs/BENCHMARKS.md,
//! "the floor"). It speaks just enough of the protocol for
//! `signalgate bench --web-door ws --app-door ws`: `welcome` on connect,
//! `registered` to the first session of a uid, `syncfrom` to the second,
//! then every text frame goes verbatim to the peer. `GET /relayed` answers
//! how many frames it has relayed.
//!
//! ```text
//! cargo run --release --example relay_floor -- 127.0.0.1:3190
//! ```

#![forbid(unsafe_code)]

mod floor;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto::Builder;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// What reaches a session's task from elsewhere.
enum Inbound {
    /// A frame from the peer, to write as it is.
    Frame(Utf8Bytes),
    /// The peer's queue: the second session of the uid arrived.
    Peer(UnboundedSender<Inbound>),
}

/// Sessions waiting for their peer, by uid.
type Waiting = Arc<Mutex<HashMap<String, UnboundedSender<Inbound>>>>;

/// On the gateway's runtime (`signalgate::server::runtime`), so that the
/// floor schedules its tasks as the door does.
fn main() -> std::io::Result<()> {
    signalgate::server::runtime::runtime()?.block_on(run())
}

async fn run() -> std::io::Result<()> {
    let waiting: Waiting = Arc::default();
    let router = Router::new().route("/ws", get(upgrade)).with_state(waiting);
    floor::serve(
        floor::address(3190),
        Builder::new(TokioExecutor::new()),
        router,
        floor::serve_one,
    )
    .await
}

async fn upgrade(State(waiting): State<Waiting>, upgrade: WebSocketUpgrade) -> Response {
    // signalgate's defaults (src/server/config.rs).
    upgrade
        .read_buffer_size(1024)
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(8 * 1024 + 4 * 64 * 1024)
        .max_message_size(64 * 1024)
        .max_frame_size(64 * 1024)
        .on_upgrade(move |socket| relay(socket, waiting))
}

/// The uid in a `register` frame, found without parsing the JSON.
fn uid_of(text: &str) -> Option<&str> {
    let start = text.find("\"uid\":\"")? + 7;
    let length = text[start..].find('"')?;
    Some(&text[start..start + length])
}

async fn relay(mut socket: WebSocket, waiting: Waiting) {
    let (own, mut inbox): (UnboundedSender<Inbound>, UnboundedReceiver<Inbound>) =
        unbounded_channel();
    let welcome = r#"{"event":"welcome","data":{"message":"Welcome!","id":"floor"}}"#;
    if socket.send(Message::text(welcome)).await.is_err() {
        return;
    }
    let mut peer: Option<UnboundedSender<Inbound>> = None;
    loop {
        tokio::select! {
            biased;
            inbound = inbox.recv() => {
                let mut next = inbound;
                while let Some(item) = next {
                    match item {
                        Inbound::Frame(text) => {
                            if socket.feed(Message::Text(text)).await.is_err() {
                                return;
                            }
                        }
                        Inbound::Peer(sender) => peer = Some(sender),
                    }
                    next = inbox.try_recv().ok();
                }
                if socket.flush().await.is_err() {
                    return;
                }
            }
            frame = socket.next() => {
                let Some(Ok(Message::Text(text))) = frame else { return };
                if let Some(peer) = &peer {
                    let _ = peer.send(Inbound::Frame(text));
                    floor::relayed();
                    continue;
                }
                let Some(uid) = uid_of(text.as_str()).map(str::to_owned) else { continue };
                let first = waiting.lock().ok().and_then(|mut map| {
                    let first = map.remove(&uid);
                    if first.is_none() {
                        map.insert(uid.clone(), own.clone());
                    }
                    first
                });
                let reply = match first {
                    None => format!(r#"{{"event":"registered","data":{{"uid":"{uid}"}}}}"#),
                    Some(first) => {
                        let _ = first.send(Inbound::Peer(own.clone()));
                        peer = Some(first);
                        format!(r#"{{"event":"syncfrom","data":{{"uid":"{uid}"}}}}"#)
                    }
                };
                if socket.send(Message::text(reply)).await.is_err() {
                    return;
                }
            }
        }
    }
}

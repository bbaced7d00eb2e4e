//! The floor under the Socket.IO door's cost per relay: the same stack
//! (tokio, hyper-util's connection builder with upgrades, axum, and
//! socketioxide with the gateway's settings) doing nothing but relaying.
//! A `message` packet's argument goes to the peer's socket verbatim, from
//! socketioxide's own handler call: no session task, no JSON check, no
//! registry beyond a map from uid to the first socket, no sequence
//! numbers, retention, bounded outbox, acknowledgements or metrics.
//!
//! It is not a server: it exists so that `scripts/bench` can measure what
//! a Socket.IO relay costs before signalgate's own work
//! (docs/BENCHMARKS.md, "the floor"). It speaks just enough of the
//! protocol for `signalgate bench --web-door socketio --app-door socketio`:
//! `welcome` on connect, `registered` to the first socket of a uid,
//! `syncfrom` to the second, then every `message` to the peer.
//! `GET /relayed` answers how many messages it has relayed.
//!
//! ```text
//! cargo run --release --example socketio_floor -- 127.0.0.1:3192
//! ```

#![forbid(unsafe_code)]

mod floor;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto::Builder;
use serde::ser::{Serialize, SerializeStruct, Serializer};
use socketioxide::SocketIo;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::SocketRef;
use socketioxide::handler::MessageHandler;
use socketioxide::socket::Socket;
use socketioxide_core::Value as PacketValue;

type FloorSocket = Socket<LocalAdapter>;

/// A socket's peer, set once the second socket of the uid registers.
#[derive(Clone, Default)]
struct Peer(Arc<OnceLock<Weak<FloorSocket>>>);

/// A socket whose peer has not registered yet, and where to tell it.
type FirstSocket = (Weak<FloorSocket>, Peer);

/// Sockets waiting for their peer, by uid.
static WAITING: LazyLock<Mutex<HashMap<String, FirstSocket>>> = LazyLock::new(Mutex::default);

/// On the gateway's runtime (`signalgate::server::runtime`), so that the
/// floor schedules its tasks as the door does.
fn main() -> std::io::Result<()> {
    signalgate::server::runtime::runtime()?.block_on(run())
}

async fn run() -> std::io::Result<()> {
    // signalgate's settings (src/doors/socketio/, src/server/config.rs).
    let (service, io) = SocketIo::builder()
        .ping_interval(Duration::from_secs(25))
        .ping_timeout(Duration::from_secs(20))
        .max_payload(64 * 1024)
        .ws_max_message_size(64 * 1024)
        .ws_max_frame_size(64 * 1024)
        .ws_read_buffer_size(1024)
        .max_buffer_size(signalgate::server::config::DEFAULT_OUTBOX_CAPACITY)
        .build_svc();
    io.ns("/", async |socket: SocketRef| {
        socket.extensions.insert(Peer::default());
        socket.on_fallback(Relay);
        let _ = socket.emit(
            "welcome",
            &RawText(r#"{"message":"Welcome!","id":"floor"}"#),
        );
    });
    let router = Router::new().route_service("/socket.io/", service);
    floor::serve(
        floor::address(3192),
        Builder::new(TokioExecutor::new()),
        router,
        floor::serve_one,
    )
    .await
}

/// JSON text written as it is (what `serde_json::value::RawValue` does,
/// without parsing the text first).
struct RawText<'a>(&'a str);

impl Serialize for RawText<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        const TOKEN: &str = "$serde_json::private::RawValue";
        let mut raw = serializer.serialize_struct(TOKEN, 1)?;
        raw.serialize_field(TOKEN, self.0)?;
        raw.end()
    }
}

/// The uid in a `register` packet, found without parsing the JSON.
fn uid_of(text: &str) -> Option<&str> {
    let start = text.find("\"uid\":\"")? + 7;
    let length = text[start..].find('"')?;
    Some(&text[start..start + length])
}

/// Every event packet, handled where socketioxide reads it.
#[derive(Clone, Copy)]
struct Relay;

impl MessageHandler<LocalAdapter, Relay> for Relay {
    fn call(&self, socket: Arc<FloorSocket>, value: PacketValue, _ack: Option<i64>) {
        let PacketValue::Str(text, _) = &value else {
            return;
        };
        let text = text.as_str();
        let Some(Peer(peer)) = socket.extensions.get::<Peer>() else {
            return;
        };
        // `["message",<data>]`: the data goes on as it is.
        if let Some(data) = text
            .strip_prefix(r#"["message","#)
            .and_then(|rest| rest.strip_suffix(']'))
        {
            if let Some(peer) = peer.get().and_then(Weak::upgrade) {
                let _ = peer.emit("message", &RawText(data));
                floor::relayed();
            }
            return;
        }
        if !text.starts_with(r#"["register","#) {
            return;
        }
        let Some(uid) = uid_of(text) else { return };
        let first = WAITING.lock().ok().and_then(|mut waiting| {
            let first = waiting.remove(uid);
            if first.is_none() {
                waiting.insert(
                    uid.to_owned(),
                    (Arc::downgrade(&socket), Peer(peer.clone())),
                );
            }
            first
        });
        let reply = format!(r#"{{"uid":"{uid}"}}"#);
        match first {
            None => {
                let _ = socket.emit("registered", &RawText(&reply));
            }
            Some((first, Peer(first_peer))) => {
                let _ = first_peer.set(Arc::downgrade(&socket));
                let _ = peer.set(first);
                let _ = socket.emit("syncfrom", &RawText(&reply));
            }
        }
    }
}

//! The floor under the gRPC door's cost per relay: the same stack (tokio,
//! hyper-util's connection builder with the gateway's HTTP/2 settings, an
//! axum router in front of tonic, the gateway's generated server types
//! and codec, a task per stream's request side, the response stream
//! polled by tonic) doing nothing but relaying. A `ClientEvent.message`
//! value goes to the peer as a `ServerEvent.message` in the bytes it came
//! in: no check that they are the gateway's own form, no registry beyond
//! a map from uid to the first session, no sequence numbers, retention,
//! bounded outbox, kill switch or metrics.
//!
//! It is not a server: it exists so that `scripts/bench` can measure what
//! a gRPC relay costs before signalgate's own work (docs/BENCHMARKS.md,
//! "the floor"). It speaks just enough of the protocol for
//! `signalgate bench --web-door grpc --app-door grpc`: `welcome` on
//! connect, `registered` to the first session of a uid, `syncfrom` to the
//! second, then every `message` to the peer. `GET /relayed` answers how
//! many messages it has relayed.
//!
//! ```text
//! cargo run --release --example grpc_floor -- 127.0.0.1:3191
//! ```

#![forbid(unsafe_code)]

mod floor;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use futures_util::Stream;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use signalgate::proto::server::signaling_server::{Signaling, SignalingServer};
use signalgate::proto::server::{
    ClientEvent, Registered, ServerEvent, SyncFrom, Welcome, client_event, server_event,
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tonic::{Request, Response, Status, Streaming};
use tower::ServiceExt;

/// Where a session's events go: its response stream's queue. `None` ends
/// the stream: the session's request side has ended.
type EventSender = UnboundedSender<Option<ServerEvent>>;

/// The peer's queue, set once the second session of the uid registers.
type PeerSlot = Arc<OnceLock<EventSender>>;

/// Sessions waiting for their peer, by uid.
type Waiting = Arc<Mutex<HashMap<String, (EventSender, PeerSlot)>>>;

/// On the gateway's runtime (`signalgate::server::runtime`), so that the
/// floor schedules its tasks as the door does.
fn main() -> std::io::Result<()> {
    signalgate::server::runtime::runtime()?.block_on(run())
}

async fn run() -> std::io::Result<()> {
    let signaling = SignalingServer::new(Floor::default());
    let router = Router::new().route_service(
        "/signalgate.v1.Signaling/{*method}",
        signaling
            .map_request(|request: axum::extract::Request| request.map(tonic::body::Body::new)),
    );
    // signalgate's HTTP/2 settings (src/server/serve.rs, src/server/config.rs).
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(25))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(signalgate::server::config::DEFAULT_HTTP2_MAX_STREAMS);
    floor::serve(floor::address(3191), builder, router, floor::serve_one).await
}

/// The service: one relay per `Connect`.
#[derive(Default, Clone)]
struct Floor {
    waiting: Waiting,
}

#[tonic::async_trait]
impl Signaling for Floor {
    type ConnectStream = Events;

    async fn connect(
        &self,
        request: Request<Streaming<ClientEvent>>,
    ) -> Result<Response<Events>, Status> {
        let (own, queue) = unbounded_channel();
        let welcome = server_event::Event::Welcome(Welcome {
            message: "Welcome!".to_owned(),
            id: "floor".to_owned(),
            resume_token: String::new(),
        });
        let _ = own.send(Some(event(welcome)));
        tokio::spawn(relay(request.into_inner(), own, self.waiting.clone()));
        Ok(Response::new(Events(queue)))
    }
}

/// A response stream: the session's queue, polled by tonic.
struct Events(UnboundedReceiver<Option<ServerEvent>>);

impl Stream for Events {
    type Item = Result<ServerEvent, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|event| event.flatten().map(Ok))
    }
}

fn event(event: server_event::Event) -> ServerEvent {
    ServerEvent {
        seq: 0,
        event: Some(event),
    }
}

/// The request side of a session: pairs it, then relays its messages.
async fn relay(mut inbound: Streaming<ClientEvent>, own: EventSender, waiting: Waiting) {
    let slot = PeerSlot::default();
    while let Ok(Some(message)) = inbound.message().await {
        match message.event {
            Some(client_event::Event::Message(value)) => {
                if let Some(peer) = slot.get() {
                    let _ = peer.send(Some(event(server_event::Event::Message(value))));
                    floor::relayed();
                }
            }
            Some(client_event::Event::Register(register)) => {
                let first = waiting.lock().ok().and_then(|mut map| {
                    let first = map.remove(&register.uid);
                    if first.is_none() {
                        map.insert(register.uid.clone(), (own.clone(), Arc::clone(&slot)));
                    }
                    first
                });
                let reply = match first {
                    None => server_event::Event::Registered(Registered {
                        uid: register.uid,
                        role: register.role,
                        peer_present: false,
                        ..Registered::default()
                    }),
                    Some((first, first_slot)) => {
                        let _ = first_slot.set(own.clone());
                        let _ = slot.set(first);
                        server_event::Event::Syncfrom(SyncFrom {})
                    }
                };
                let _ = own.send(Some(event(reply)));
            }
            _ => {}
        }
    }
    // The peer may still hold this session's queue: end the stream here.
    let _ = own.send(None);
}

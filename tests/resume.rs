//! Session resume: an abruptly dropped session is held away for the window
//! and taken over by `resume` on any door, with nothing lost and nothing
//! applied twice; and every way a resume must fail.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::cluster::Topology;
use common::{TestClient, TestGateway, paired, paired_with_ids, test_config};
use serde_json::{Value, json};
use signalgate::Config;
use signalgate_client::Door;

/// Generates, per (dropped door, resume door, peer door), tests on one
/// node and on two nodes where the resume lands on the other node (the
/// session is handed over), each with request ids on every request and
/// with none at all (gRPC id 0, no JSON `id`, no Socket.IO callback).
macro_rules! across_three_doors {
    ($($name:ident: $dropped:expr, $resumed:expr, $peer:expr;)*) => {$(
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn one_node() {
                nothing_lost_nothing_twice(Topology::Single, $dropped, $resumed, $peer, Ids::Everywhere).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn across_nodes() {
                nothing_lost_nothing_twice(Topology::TwoNodes, $dropped, $resumed, $peer, Ids::Everywhere).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn one_node_without_ids() {
                nothing_lost_nothing_twice(Topology::Single, $dropped, $resumed, $peer, Ids::Nowhere).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn across_nodes_without_ids() {
                nothing_lost_nothing_twice(Topology::TwoNodes, $dropped, $resumed, $peer, Ids::Nowhere).await
            }
        }
    )*};
}

/// Whether a scenario's requests carry request ids.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ids {
    /// Every request, `register` and `resume` included.
    Everywhere,
    /// None: success is seen only in its effect.
    Nowhere,
}

impl Ids {
    fn of(self, id: u64) -> Option<u64> {
        (self == Ids::Everywhere).then_some(id)
    }
}

use Door::{Grpc, SocketIo, Ws};
across_three_doors! {
    ws_to_ws_peer_ws: Ws, Ws, Ws;
    ws_to_ws_peer_grpc: Ws, Ws, Grpc;
    ws_to_ws_peer_socketio: Ws, Ws, SocketIo;
    ws_to_grpc_peer_ws: Ws, Grpc, Ws;
    ws_to_grpc_peer_grpc: Ws, Grpc, Grpc;
    ws_to_grpc_peer_socketio: Ws, Grpc, SocketIo;
    ws_to_socketio_peer_ws: Ws, SocketIo, Ws;
    ws_to_socketio_peer_grpc: Ws, SocketIo, Grpc;
    ws_to_socketio_peer_socketio: Ws, SocketIo, SocketIo;
    grpc_to_ws_peer_ws: Grpc, Ws, Ws;
    grpc_to_ws_peer_grpc: Grpc, Ws, Grpc;
    grpc_to_ws_peer_socketio: Grpc, Ws, SocketIo;
    grpc_to_grpc_peer_ws: Grpc, Grpc, Ws;
    grpc_to_grpc_peer_grpc: Grpc, Grpc, Grpc;
    grpc_to_grpc_peer_socketio: Grpc, Grpc, SocketIo;
    grpc_to_socketio_peer_ws: Grpc, SocketIo, Ws;
    grpc_to_socketio_peer_grpc: Grpc, SocketIo, Grpc;
    grpc_to_socketio_peer_socketio: Grpc, SocketIo, SocketIo;
    socketio_to_ws_peer_ws: SocketIo, Ws, Ws;
    socketio_to_ws_peer_grpc: SocketIo, Ws, Grpc;
    socketio_to_ws_peer_socketio: SocketIo, Ws, SocketIo;
    socketio_to_grpc_peer_ws: SocketIo, Grpc, Ws;
    socketio_to_grpc_peer_grpc: SocketIo, Grpc, Grpc;
    socketio_to_grpc_peer_socketio: SocketIo, Grpc, SocketIo;
    socketio_to_socketio_peer_ws: SocketIo, SocketIo, Ws;
    socketio_to_socketio_peer_grpc: SocketIo, SocketIo, Grpc;
    socketio_to_socketio_peer_socketio: SocketIo, SocketIo, SocketIo;
}

fn numbered(from: &str, n: u64) -> Value {
    json!({"from": from, "n": n})
}

/// What one side has seen so far.
#[derive(Default)]
struct Seen {
    numbers: Vec<u64>,
    /// Every ack received, in order (a re-send is acked again).
    acks: Vec<u64>,
    names: Vec<String>,
}

impl Seen {
    fn acked(&self) -> BTreeSet<u64> {
        self.acks.iter().copied().collect()
    }

    fn take(&mut self, event: &Value, from_peer: &str) {
        let name = event["event"].as_str().unwrap_or_default().to_owned();
        match name.as_str() {
            "message" => {
                assert_eq!(event["data"]["from"], from_peer, "{event}");
                self.numbers.push(event["data"]["n"].as_u64().expect("n"));
            }
            "ack" => self.acks.push(event["id"].as_u64().expect("id")),
            "error" => panic!("unexpected error {event}"),
            _ => {}
        }
        self.names.push(name);
    }
}

/// Reads until `done` holds for what was seen.
async fn read_until(
    client: &mut TestClient,
    seen: &mut Seen,
    from_peer: &str,
    done: impl Fn(&Seen) -> bool,
) {
    while !done(seen) {
        let event = client.next_event().await;
        seen.take(&event, from_peer);
    }
}

/// The app (a phone) drops abruptly in the middle of a two-way stream of
/// numbered messages, the web keeps sending, the app resumes on another
/// door within the window: both end up with every message exactly once, in
/// order; the web sees `peer_away` then `peer_back` and never `byebye`.
/// With `Ids::Nowhere` no request carries an id, `resume` included: the
/// resume is still answered by `resumed` and the replay.
async fn nothing_lost_nothing_twice(
    topology: Topology,
    dropped_door: Door,
    resume_door: Door,
    peer_door: Door,
    ids: Ids,
) {
    let gateway = topology.start().await;
    // Request ids: web 100 (register), 101..; app 1 (register), 2...
    let (mut web, mut app) = paired_with_ids(
        &gateway,
        "phone",
        peer_door,
        dropped_door,
        (ids == Ids::Everywhere).then_some((100, 1)),
    )
    .await;
    let web_id = |n: u64| ids.of(101 + n);
    let app_id = |n: u64| ids.of(2 + n);
    let token = app.resume_token();
    let session_id = app.welcome["id"].clone();
    let (mut web_seen, mut app_seen) = (Seen::default(), Seen::default());

    // A two-way stream: ten each way.
    for n in 0..10 {
        web.send("message", Some(numbered("web", n)), web_id(n))
            .await;
        app.send("message", Some(numbered("app", n)), app_id(n))
            .await;
    }
    if ids == Ids::Nowhere {
        // Without acks the app cannot tell what to re-send: it drops only
        // once the web has had all it sent.
        read_until(&mut web, &mut web_seen, "app", |seen| {
            seen.numbers.len() >= 10
        })
        .await;
    }
    // The app reads half of what comes its way, then loses its network.
    read_until(&mut app, &mut app_seen, "web", |seen| {
        seen.numbers.len() >= 5
    })
    .await;
    let last_seq = app.last_seq;
    app.abort();

    // The web is told, and keeps talking into the gap.
    read_until(&mut web, &mut web_seen, "app", |seen| {
        seen.names.iter().any(|n| n == "peer_away")
    })
    .await;
    for n in 10..20 {
        web.send("message", Some(numbered("web", n)), web_id(n))
            .await;
    }
    assert_eq!(gateway.census().away_sessions, 1);

    // Back, on another door (and with two nodes, on the other node):
    // resume instead of register.
    let mut app = gateway.app(resume_door).await;
    app.send(
        "resume",
        Some(json!({"token": token, "last_seq": last_seq})),
        ids.of(1000),
    )
    .await;
    let resumed = app.expect("resumed").await;
    assert_eq!(resumed["id"], session_id, "the same session comes back");
    assert_eq!(resumed["uid"], "phone");
    assert_eq!(resumed["role"], "app");
    assert_eq!(resumed["polite"], false, "the app side is impolite");
    let next_token = resumed["resumeToken"]
        .as_str()
        .expect("fresh token")
        .to_owned();
    assert_ne!(next_token, token, "a spent token is replaced");
    match ids {
        Ids::Everywhere => {
            // Every missed event, then the resume's own ack.
            read_until(&mut app, &mut app_seen, "web", |seen| {
                seen.acked().contains(&1000)
            })
            .await;
            // Re-send every request without an ack; also one that was
            // acked, as a client unsure of its state would: neither is
            // applied twice, both acked.
            let resent: Vec<u64> = (2..=11)
                .filter(|id| !app_seen.acked().contains(id))
                .chain([2])
                .collect();
            let acks_before = app_seen.acks.len();
            for id in resent.iter().copied() {
                app.send("message", Some(numbered("app", id - 2)), Some(id))
                    .await;
            }
            read_until(&mut app, &mut app_seen, "web", |seen| {
                seen.acks.len() >= acks_before + resent.len()
            })
            .await;
            assert!((2..=11).all(|id| app_seen.acked().contains(&id)));
        }
        Ids::Nowhere => {
            // Every missed event is replayed.
            read_until(&mut app, &mut app_seen, "web", |seen| {
                seen.numbers.len() >= 20
            })
            .await;
        }
    }

    // Normal flow again, both ways.
    for n in 20..25 {
        web.send("message", Some(numbered("web", n)), web_id(n))
            .await;
    }
    for n in 10..15 {
        app.send("message", Some(numbered("app", n)), app_id(n))
            .await;
    }
    read_until(&mut app, &mut app_seen, "web", |seen| {
        seen.numbers.len() >= 25
            && (ids == Ids::Nowhere || (12..=16).all(|id| seen.acked().contains(&id)))
    })
    .await;
    read_until(&mut web, &mut web_seen, "app", |seen| {
        seen.numbers.len() >= 15
            && (ids == Ids::Nowhere || (101..=125).all(|id| seen.acked().contains(&id)))
    })
    .await;
    app.expect_silence().await;
    web.expect_silence().await;

    assert_eq!(
        app_seen.numbers,
        (0..25).collect::<Vec<_>>(),
        "the app got every web message once, in order"
    );
    assert_eq!(
        web_seen.numbers,
        (0..15).collect::<Vec<_>>(),
        "the web got every app message once, in order"
    );
    if ids == Ids::Nowhere {
        assert!(app_seen.acks.is_empty() && web_seen.acks.is_empty());
    }
    let away = web_seen
        .names
        .iter()
        .position(|n| n == "peer_away")
        .expect("peer_away");
    let back = web_seen
        .names
        .iter()
        .position(|n| n == "peer_back")
        .expect("peer_back");
    assert!(away < back, "{:?}", web_seen.names);
    assert!(
        !web_seen.names.iter().any(|n| n == "byebye"),
        "{:?}",
        web_seen.names
    );
    assert_eq!(gateway.census().away_sessions, 0);

    app.close().await;
    web.expect("byebye").await;
    web.close().await;
    gateway.assert_empty().await;
}

fn with_window(window: Duration) -> Config {
    Config {
        resume_window: window,
        ..test_config()
    }
}

async fn resume_fails(client: &mut TestClient, token: &str, last_seq: u64) {
    client
        .send(
            "resume",
            Some(json!({"token": token, "last_seq": last_seq})),
            Some(77),
        )
        .await;
    client.expect_error("RESUME_FAILED", Some(77)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_expiry_says_byebye_and_a_late_resume_fails() {
    let gateway = TestGateway::start_with(with_window(Duration::from_millis(300))).await;
    for door in Door::ALL {
        let (mut web, app) = paired(&gateway, "late", Door::Ws, door).await;
        let (token, last_seq) = (app.resume_token(), app.last_seq);
        app.abort();
        web.expect("peer_away").await;
        web.expect("byebye").await;
        let mut late = gateway.connect(door).await;
        resume_fails(&mut late, &token, last_seq).await;
        // The failed resume leaves the connection usable: register afresh.
        let registered = late.register("late", "app").await;
        assert_eq!(registered["peerPresent"], true);
        late.expect("syncfrom").await;
        late.close().await;
        web.expect("byebye").await;
        web.close().await;
    }
    gateway.assert_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_reused_and_own_tokens_fail() {
    let gateway = TestGateway::start().await;
    let (mut web, app) = paired(&gateway, "tokens", Door::Grpc, Door::Ws).await;
    let (token, last_seq) = (app.resume_token(), app.last_seq);
    app.abort();
    web.expect("peer_away").await;
    for door in Door::ALL {
        let mut forger = gateway.connect(door).await;
        resume_fails(&mut forger, "not-a-token", 0).await;
        resume_fails(&mut forger, &token[..token.len() - 1], last_seq).await;
        // A connection cannot resume its own (fresh) session.
        let own = forger.resume_token();
        resume_fails(&mut forger, &own, 0).await;
        forger.close().await;
    }
    // last_seq ahead of what the session was sent.
    let mut confused = gateway.connect(Door::Ws).await;
    resume_fails(&mut confused, &token, last_seq + 1000).await;
    confused.close().await;
    // The real resume works once ...
    let mut first = gateway.connect(Door::SocketIo).await;
    first
        .send(
            "resume",
            Some(json!({"token": token, "last_seq": last_seq})),
            Some(5),
        )
        .await;
    first.expect("resumed").await;
    first.expect_ack(5).await;
    web.expect("peer_back").await;
    // ... and the spent token never again.
    let mut second = gateway.connect(Door::Grpc).await;
    resume_fails(&mut second, &token, last_seq).await;
    second.close().await;
    first.close().await;
    web.expect("byebye").await;
    web.close().await;
    gateway.assert_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_register_replaces_an_away_session_and_kills_its_token() {
    let gateway = TestGateway::start().await;
    let (mut web, app) = paired(&gateway, "replace", Door::Ws, Door::Grpc).await;
    let (token, last_seq) = (app.resume_token(), app.last_seq);
    app.abort();
    web.expect("peer_away").await;
    let mut fresh = gateway.connect(Door::SocketIo).await;
    let registered = fresh.register("replace", "app").await;
    assert_eq!(registered["peerPresent"], true);
    fresh.expect("syncfrom").await;
    web.expect("peer_back").await;
    gateway
        .wait_for_census(|census| census.away_sessions == 0)
        .await;
    let mut late = gateway.connect(Door::Ws).await;
    resume_fails(&mut late, &token, last_seq).await;
    late.close().await;
    web.send("message", Some(json!("to the fresh app")), None)
        .await;
    assert_eq!(fresh.expect("message").await, json!("to the fresh app"));
    web.expect_silence().await;
    fresh.close().await;
    web.expect("byebye").await;
    web.close().await;
    gateway.assert_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_while_away_tells_the_sender_and_the_resume_fails() {
    let gateway = TestGateway::start_with(Config {
        resume_buffer_events: 8,
        ..test_config()
    })
    .await;
    let (mut web, app) = paired(&gateway, "overflow", Door::Grpc, Door::Ws).await;
    let (token, last_seq) = (app.resume_token(), app.last_seq);
    app.abort();
    web.expect("peer_away").await;
    let mut refused = None;
    for id in 1..=20u64 {
        web.send("message", Some(json!({"n": id})), Some(id)).await;
        let event = web.next_event().await;
        if event["event"] == "error" {
            assert_eq!(event["data"]["code"], "SLOW_CONSUMER", "{event}");
            assert_eq!(event["id"], id);
            refused = Some(id);
            break;
        }
        assert_eq!(event["event"], "ack", "{event}");
    }
    assert!(refused.is_some(), "the away buffer never overflowed");
    // The away session is over: the peer is told, and a resume fails explicitly.
    web.expect("byebye").await;
    let mut late = gateway.connect(Door::Grpc).await;
    resume_fails(&mut late, &token, last_seq).await;
    late.close().await;
    web.close().await;
    gateway.assert_empty().await;
}

/// A call longer than its buffer (every retained event already sent) still
/// survives a drop: what the connection was sent makes room for what its
/// peer says while it is away (found by scripts/chaos: before, the first
/// message to a dropped session of a long call ended it with
/// `SLOW_CONSUMER`, and its peer heard `byebye`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_call_survives_a_drop() {
    let gateway = TestGateway::start_with(Config {
        resume_buffer_events: 8,
        ..test_config()
    })
    .await;
    for door in Door::ALL {
        let (mut web, mut app) = paired(&gateway, "long", Door::Ws, door).await;
        // Three buffers' worth of events, all read: the app's buffer is
        // full of events it has.
        for n in 0..12u64 {
            web.send("message", Some(json!({"n": n})), Some(n + 1))
                .await;
            assert_eq!(web.expect("ack").await, serde_json::Value::Null);
            assert_eq!(app.expect("message").await, json!({"n": n}));
        }
        let (token, last_seq) = (app.resume_token(), app.last_seq);
        app.abort();
        web.expect("peer_away").await;
        // Five more while it is away: taken, not refused.
        for n in 12..17u64 {
            web.send("message", Some(json!({"n": n})), Some(n + 1))
                .await;
            let answer = web.next_event().await;
            assert_eq!(answer["event"], "ack", "{answer}");
        }
        let mut back = gateway.connect(door).await;
        back.send(
            "resume",
            Some(json!({"token": token, "last_seq": last_seq})),
            None,
        )
        .await;
        back.expect("resumed").await;
        for n in 12..17u64 {
            assert_eq!(back.expect("message").await, json!({"n": n}));
        }
        web.expect("peer_back").await;
        back.close().await;
        web.expect("byebye").await;
        web.close().await;
    }
    gateway.assert_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_close_is_an_immediate_byebye() {
    let gateway = TestGateway::start().await;
    for door in Door::ALL {
        let (mut web, app) = paired(&gateway, "clean", Door::Ws, door).await;
        let token = app.resume_token();
        app.close().await;
        // No peer_away: the next thing is byebye.
        web.expect("byebye").await;
        let mut late = gateway.connect(door).await;
        resume_fails(&mut late, &token, 0).await;
        late.close().await;
        web.close().await;
    }
    gateway.assert_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_half_open_session_takes_it_over() {
    let gateway = TestGateway::start().await;
    let (mut web, mut stale) = paired(&gateway, "takeover", Door::Ws, Door::Ws).await;
    let token = stale.resume_token();
    // The phone switched networks; its old connection has not noticed yet.
    let mut fresh = gateway.connect(Door::Grpc).await;
    fresh
        .send(
            "resume",
            Some(json!({"token": token, "last_seq": stale.last_seq})),
            Some(1),
        )
        .await;
    fresh.expect("resumed").await;
    fresh.expect_ack(1).await;
    stale.expect_error("REPLACED", None).await;
    // No away phase: the web notices nothing.
    web.expect_silence().await;
    web.send("message", Some(json!("to the new link")), None)
        .await;
    assert_eq!(fresh.expect("message").await, json!("to the new link"));
    fresh.close().await;
    web.expect("byebye").await;
    web.close().await;
    gateway.assert_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_disabled_means_an_abrupt_end_is_a_byebye() {
    let gateway = TestGateway::start_with(with_window(Duration::ZERO)).await;
    let (mut web, app) = paired(&gateway, "disabled", Door::Ws, Door::Grpc).await;
    assert!(app.welcome.get("resumeToken").is_none(), "{}", app.welcome);
    app.abort();
    web.expect("byebye").await;
    web.close().await;
    gateway.assert_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_away_sessions() {
    let gateway = TestGateway::start().await;
    let (mut web, app) = paired(&gateway, "shutdown", Door::Grpc, Door::Ws).await;
    app.abort();
    web.expect("peer_away").await;
    let hub = gateway.hub.clone();
    tokio::time::timeout(Duration::from_secs(10), gateway.stop())
        .await
        .expect("stops within the grace period");
    assert!(hub.census().is_empty(), "{:?}", hub.census());
}

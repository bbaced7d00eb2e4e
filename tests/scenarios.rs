//! The scenario suite: every rule of docs/PROTOCOL.md, run for every pair of
//! doors (web door × app door) against the real gateway.

mod common;

use common::cluster::Topology;
use common::{TestGateway, paired};
use std::time::Duration;

use serde_json::{Value, json};
use signalgate_client::{Closed, Door};

include!("common/across_doors.rs");

across_doors!(
    pairing_web_first,
    pairing_app_first,
    syncto_goes_app_to_web_only,
    every_relay_event_both_ways,
    payloads_arrive_unchanged,
    order_holds_for_a_thousand_messages,
    newer_web_replaces_older,
    newer_app_replaces_older,
    clean_disconnect_sends_byebye,
    abrupt_disconnect_holds_the_session_then_byebye,
    ipaddr_lists_advertised_addresses,
    ice_servers_on_register_renewal_and_resume,
    every_error_code,
);

async fn pairing_web_first(topology: Topology, web_door: Door, app_door: Door) {
    let gateway = topology.start().await;
    let mut web = gateway.web(web_door).await;
    let mut app = gateway.app(app_door).await;
    let registered = web.register("alice", "web").await;
    assert_eq!(registered["peerPresent"], false);
    assert_eq!(registered.get("polite"), polite_field(web_door, true));
    let registered = app.register("alice", "app").await;
    assert_eq!(registered["peerPresent"], true);
    assert_eq!(registered.get("polite"), polite_field(app_door, false));
    app.expect("syncfrom").await;
    web.expect_silence().await;
    assert_eq!(gateway.census().registry.bound_sessions, 2);
    web.close().await;
    app.expect("byebye").await;
    app.close().await;
    gateway.assert_empty().await;
}

/// What `registered` says of the perfect-negotiation role on `door`: the
/// web side is polite, the app side is not; the Socket.IO door keeps the
/// seed's `registered` shape and leaves the field out (docs/PROTOCOL.md,
/// *Negotiation*).
fn polite_field(door: Door, polite: bool) -> Option<&'static Value> {
    static TRUE: Value = Value::Bool(true);
    static FALSE: Value = Value::Bool(false);
    match door {
        Door::SocketIo => None,
        Door::Ws | Door::Grpc => Some(if polite { &TRUE } else { &FALSE }),
    }
}

async fn pairing_app_first(topology: Topology, web_door: Door, app_door: Door) {
    let gateway = topology.start().await;
    let mut web = gateway.web(web_door).await;
    let mut app = gateway.app(app_door).await;
    let registered = app.register("bob", "app").await;
    assert_eq!(registered["peerPresent"], false);
    app.expect_silence().await;
    // An id on register is acknowledged after `registered`.
    web.send(
        "register",
        Some(json!({"uid": "bob", "type": "web"})),
        Some(7),
    )
    .await;
    let registered = web.expect("registered").await;
    assert_eq!(registered["peerPresent"], true);
    web.expect_ack(7).await;
    app.expect("syncfrom").await;
    web.expect_silence().await;
    app.close().await;
    web.expect("byebye").await;
    web.close().await;
    gateway.assert_empty().await;
}

async fn syncto_goes_app_to_web_only(topology: Topology, web_door: Door, app_door: Door) {
    let gateway = topology.start().await;
    let (mut web, mut app) = paired(&gateway, "carol", web_door, app_door).await;
    let data = json!({"contacts": [{"name": "Zoë", "tel": "+49 30 1234"}], "version": 3});
    app.send("syncto", Some(data.clone()), Some(1)).await;
    app.expect_ack(1).await;
    assert_eq!(web.expect("syncto").await, data);
    // The seed echoed a web syncto back to the web itself; we refuse it.
    web.send("syncto", Some(json!({"x": 1})), Some(2)).await;
    web.expect_error("WRONG_ROLE", Some(2)).await;
    app.expect_silence().await;
    web.expect_silence().await;
    web.close().await;
    app.expect("byebye").await;
    app.close().await;
    gateway.assert_empty().await;
}

async fn every_relay_event_both_ways(topology: Topology, web_door: Door, app_door: Door) {
    let gateway = topology.start().await;
    let (mut web, mut app) = paired(&gateway, "dave", web_door, app_door).await;
    let relays = [
        (
            "message",
            json!({"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}),
        ),
        ("export", json!({"format": "csv", "rows": 12})),
        ("exception", json!({"code": 17, "reason": "camera busy"})),
        ("transfile", json!({"size": 1048576, "name": "photo.jpg"})),
        ("ctrlSendSpeed", json!(65536)),
    ];
    let mut id = 100;
    for web_sends in [true, false] {
        let (sender, receiver) = if web_sends {
            (&mut web, &mut app)
        } else {
            (&mut app, &mut web)
        };
        for (event, data) in &relays {
            id += 1;
            sender.send(event, Some(data.clone()), Some(id)).await;
            sender.expect_ack(id).await;
            assert_eq!(&receiver.expect(event).await, data, "{event}");
        }
        // Without an id nothing is acknowledged, but the relay happens.
        sender.send("message", Some(json!("no id")), None).await;
        assert_eq!(receiver.expect("message").await, json!("no id"));
        sender.expect_silence().await;
    }
    app.close().await;
    web.expect("byebye").await;
    web.close().await;
    gateway.assert_empty().await;
}

async fn payloads_arrive_unchanged(topology: Topology, web_door: Door, app_door: Door) {
    let gateway = topology.start().await;
    let (mut web, mut app) = paired(&gateway, "ünïcødé-uid-🚀", web_door, app_door).await;
    // The deepest payload accepted: 32 levels of arrays and objects.
    let mut deep = json!("bottom");
    for level in 0..16 {
        deep = json!({"level": level, "inner": [deep]});
    }
    let payloads = [
        json!(null),
        json!(true),
        json!(0),
        json!(-42),
        json!(9007199254740991_i64),
        json!(1.5),
        json!(-0.001),
        json!(6.02214076e23),
        json!(""),
        json!("emoji 😀, CJK 信令, RTL مرحبا, quotes \" and \\ and \u{0001}"),
        json!([]),
        json!({}),
        json!([1, "two", [3.25], {"four": null}]),
        json!({"candidate": "candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host", "sdpMid": "0", "sdpMLineIndex": 0}),
        deep.clone(),
    ];
    for payload in &payloads {
        web.send("message", Some(payload.clone()), None).await;
        assert_eq!(&app.expect("message").await, payload);
        app.send("message", Some(payload.clone()), None).await;
        assert_eq!(&web.expect("message").await, payload);
    }
    // One level deeper is refused on every door, before it reaches the peer.
    let too_deep = json!([deep]);
    for sender in [&mut web, &mut app] {
        sender
            .send("message", Some(too_deep.clone()), Some(77))
            .await;
        sender.expect_error("BAD_REQUEST", Some(77)).await;
    }
    web.expect_silence().await;
    app.expect_silence().await;
    web.close().await;
    app.expect("byebye").await;
    app.close().await;
    gateway.assert_empty().await;
}

async fn order_holds_for_a_thousand_messages(topology: Topology, web_door: Door, app_door: Door) {
    const COUNT: u64 = 1000;
    let gateway = topology.start().await;
    let (web, app) = paired(&gateway, "erin", web_door, app_door).await;
    // Both sides send and receive at once. A Socket.IO sender facing a
    // peer on another node keeps at most WINDOW messages unacknowledged:
    // Socket.IO cannot push back on reads, each cross-node relay takes a
    // round trip, and a client firing more than the door's inbox holds is
    // told RATE_LIMITED (docs/CLUSTER.md). Every other case sends blindly.
    const WINDOW: u64 = 64;
    let windowed = |door: Door| {
        matches!(topology, Topology::TwoNodes | Topology::RedisCluster(_)) && door == Door::SocketIo
    };
    let exchange = |mut me: common::TestClient, tag: &'static str, windowed: bool| async move {
        let (mut sink, mut source, mut acked) = (0, 0, 0);
        while source < COUNT || (windowed && acked < sink) {
            let may_send = sink < COUNT && (!windowed || sink - acked < WINDOW);
            if may_send {
                let id = windowed.then_some(sink + 1);
                me.send("message", Some(json!({"from": tag, "n": sink})), id)
                    .await;
                sink += 1;
            }
            // Read whatever has arrived, keeping order checks exact.
            while let Ok(event) = tokio::time::timeout(
                std::time::Duration::from_millis(if may_send { 0 } else { 5000 }),
                me.client.recv(),
            )
            .await
            {
                let signalgate_client::Incoming::Event(event) = event.expect("recv") else {
                    panic!("closed early")
                };
                if event["event"] == "ack" {
                    assert!(windowed, "{event}");
                    acked += 1;
                    assert_eq!(event["id"], acked, "acks arrive in the order sent");
                    break;
                }
                assert_eq!(event["event"], "message", "{event}");
                assert_ne!(event["data"]["from"], tag);
                assert_eq!(
                    event["data"]["n"], source,
                    "messages arrive in the order sent"
                );
                source += 1;
                if source == COUNT || may_send {
                    break;
                }
            }
        }
        me
    };
    let (web, app) = tokio::join!(
        exchange(web, "web", windowed(web_door)),
        exchange(app, "app", windowed(app_door))
    );
    web.close().await;
    let mut app = app;
    app.expect("byebye").await;
    app.close().await;
    gateway.assert_empty().await;
}

async fn newer_web_replaces_older(topology: Topology, web_door: Door, app_door: Door) {
    let gateway = topology.start().await;
    let (mut old_web, mut app) = paired(&gateway, "frank", web_door, app_door).await;
    let mut new_web = gateway.web(web_door).await;
    let registered = new_web.register("frank", "web").await;
    assert_eq!(registered["peerPresent"], true);
    old_web.expect_error("REPLACED", None).await;
    assert_replaced_close(old_web.expect_closed().await);
    // The peer stays paired, and the app is asked to sync again.
    app.expect("syncfrom").await;
    // The replaced session's cleanup must not evict its successor.
    drop(old_web);
    tokio::time::sleep(common::SILENCE).await;
    app.send("message", Some(json!("to the new web")), Some(1))
        .await;
    app.expect_ack(1).await;
    assert_eq!(new_web.expect("message").await, json!("to the new web"));
    app.expect_silence().await;
    new_web.close().await;
    app.expect("byebye").await;
    app.close().await;
    gateway.assert_empty().await;
}

async fn newer_app_replaces_older(topology: Topology, web_door: Door, app_door: Door) {
    let gateway = topology.start().await;
    let (mut web, mut old_app) = paired(&gateway, "grace", web_door, app_door).await;
    let mut new_app = gateway.app(app_door).await;
    let registered = new_app.register("grace", "app").await;
    assert_eq!(registered["peerPresent"], true);
    new_app.expect("syncfrom").await;
    old_app.expect_error("REPLACED", None).await;
    assert_replaced_close(old_app.expect_closed().await);
    old_app.abort();
    web.expect_silence().await;
    web.send("message", Some(json!({"hello": "new app"})), None)
        .await;
    assert_eq!(new_app.expect("message").await, json!({"hello": "new app"}));
    web.close().await;
    new_app.expect("byebye").await;
    new_app.close().await;
    gateway.assert_empty().await;
}

fn assert_replaced_close(closed: Closed) {
    match closed {
        Closed::WebSocket(Some((code, _))) => assert_eq!(code, 4001),
        Closed::Grpc(code, _) => assert_eq!(code, tonic::Code::Aborted),
        Closed::SocketIo(how) => assert_eq!(how, "server disconnect"),
        other => panic!("unexpected close {other:?}"),
    }
}

async fn clean_disconnect_sends_byebye(topology: Topology, web_door: Door, app_door: Door) {
    let gateway = topology.start().await;
    let (mut web, app) = paired(&gateway, "heidi", web_door, app_door).await;
    app.close().await;
    web.expect("byebye").await;
    web.send("message", Some(json!("anyone?")), Some(5)).await;
    web.expect_error("NO_PEER", Some(5)).await;
    assert_eq!(gateway.census().registry.bound_sessions, 1);
    // A new app pairs with the waiting web.
    let mut app = gateway.app(app_door).await;
    let registered = app.register("heidi", "app").await;
    assert_eq!(registered["peerPresent"], true);
    app.expect("syncfrom").await;
    web.close().await;
    app.expect("byebye").await;
    app.close().await;
    gateway.assert_empty().await;
}

async fn abrupt_disconnect_holds_the_session_then_byebye(
    topology: Topology,
    web_door: Door,
    app_door: Door,
) {
    let gateway = topology
        .start_with(signalgate::Config {
            resume_window: std::time::Duration::from_millis(300),
            ..common::test_config()
        })
        .await;
    let (web, mut app) = paired(&gateway, "ivan", web_door, app_door).await;
    web.abort();
    // The web may come back: its role stays taken for the window.
    app.expect("peer_away").await;
    assert_eq!(gateway.census().away_sessions, 1);
    app.send("message", Some(json!("queued for the web")), Some(8))
        .await;
    app.expect_ack(8).await;
    // Nobody resumed it: the pairing ends.
    app.expect("byebye").await;
    app.send("message", Some(json!("hello?")), Some(9)).await;
    app.expect_error("NO_PEER", Some(9)).await;
    app.close().await;
    gateway.assert_empty().await;
}

async fn ipaddr_lists_advertised_addresses(topology: Topology, web_door: Door, app_door: Door) {
    let gateway = topology.start().await;
    for door in [web_door, app_door] {
        let mut client = gateway.web(door).await;
        // Registration is not needed for ipaddr.
        client.send("ipaddr", None, Some(3)).await;
        if door == Door::SocketIo {
            // Socket.IO emits one `ipaddr` per address, as the seed does.
            assert_eq!(client.expect("ipaddr").await, json!("192.0.2.10"));
            assert_eq!(client.expect("ipaddr").await, json!("198.51.100.7"));
        } else {
            assert_eq!(
                client.expect("ipaddr").await,
                json!(["192.0.2.10", "198.51.100.7"])
            );
        }
        client.expect_ack(3).await;
        client.close().await;
    }
    gateway.assert_empty().await;
}

const TURN_SECRET: &str = "scenario-turn-secret";
const TURN_TTL_SECONDS: u64 = 3600;

/// A list as the gateway must mint it now for `uid`: one TURN entry with
/// credentials that check (HMAC-SHA1 computed here), then STUN bare.
fn assert_ice_servers(data: &Value, uid: &str, door: Door) {
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let expire_at = data["iceServersExpireAt"]
        .as_u64()
        .unwrap_or_else(|| panic!("{door}: no iceServersExpireAt in {data}"));
    assert!(
        expire_at.abs_diff(now + TURN_TTL_SECONDS) <= 5,
        "{door}: expiry {expire_at} is not now + ttl ({now})"
    );
    let servers = data["iceServers"]
        .as_array()
        .unwrap_or_else(|| panic!("{door}: no iceServers in {data}"));
    assert_eq!(servers.len(), 2, "{door}: {data}");
    assert_eq!(
        servers[0]["urls"],
        json!([
            "turn:127.0.0.1:3478?transport=udp",
            "turns:turn.example.com:5349"
        ])
    );
    let username = format!("{expire_at}:{uid}");
    assert_eq!(servers[0]["username"], username, "{door}");
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(TURN_SECRET.as_bytes()).expect("key");
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(servers[0]["credential"], credential, "{door}");
    assert_eq!(
        servers[1],
        json!({"urls": ["stun:127.0.0.1:3478"]}),
        "{door}"
    );
}

/// `registered` and `resumed` carry fresh ICE servers (`registered` not on
/// Socket.IO, whose `registered` keeps the seed-era shape), `iceservers`
/// renews them for a registered session only, on every door and node.
async fn ice_servers_on_register_renewal_and_resume(
    topology: Topology,
    web_door: Door,
    app_door: Door,
) {
    let gateway = topology
        .start_with(signalgate::Config {
            ice_servers: vec![
                "turn:127.0.0.1:3478?transport=udp".into(),
                "stun:127.0.0.1:3478".into(),
                "turns:turn.example.com:5349".into(),
            ],
            turn_secret: Some(TURN_SECRET.into()),
            turn_ttl: Duration::from_secs(TURN_TTL_SECONDS),
            ..common::test_config()
        })
        .await;
    let mut web = gateway.web(web_door).await;
    let mut app = gateway.app(app_door).await;
    // Only a registered session may ask.
    app.send("iceservers", None, Some(1)).await;
    app.expect_error("NOT_REGISTERED", Some(1)).await;
    for (client, role) in [(&mut web, "web"), (&mut app, "app")] {
        let registered = client.register("kim", role).await;
        if client.door == Door::SocketIo {
            assert!(registered.get("iceServers").is_none(), "{registered}");
            assert!(
                registered.get("iceServersExpireAt").is_none(),
                "{registered}"
            );
        } else {
            assert_ice_servers(&registered, "kim", client.door);
        }
    }
    app.expect("syncfrom").await;
    for client in [&mut web, &mut app] {
        client.send("iceservers", None, Some(2)).await;
        let list = client.expect("iceservers").await;
        assert_ice_servers(&list, "kim", client.door);
        client.expect_ack(2).await;
        // Without an id: the list, and nothing else.
        client
            .send("iceservers", Some(json!({"ignored": true})), None)
            .await;
        assert_ice_servers(&client.expect("iceservers").await, "kim", client.door);
    }
    // The app's network drops; it resumes (with two nodes, on the other
    // node) and gets a fresh list with its `resumed`.
    let token = app.resume_token();
    let last_seq = app.last_seq;
    app.abort();
    web.expect("peer_away").await;
    let mut app = gateway.app(app_door).await;
    app.send(
        "resume",
        Some(json!({"token": token, "last_seq": last_seq})),
        Some(3),
    )
    .await;
    let resumed = app.expect("resumed").await;
    assert_ice_servers(&resumed, "kim", app_door);
    app.expect_ack(3).await;
    web.expect("peer_back").await;
    app.send("iceservers", None, Some(4)).await;
    assert_ice_servers(&app.expect("iceservers").await, "kim", app_door);
    app.expect_ack(4).await;
    web.close().await;
    app.expect("byebye").await;
    app.close().await;
    gateway.assert_empty().await;
}

async fn every_error_code(topology: Topology, web_door: Door, app_door: Door) {
    let gateway = topology.start().await;
    let mut web = gateway.web(web_door).await;
    let mut app = gateway.app(app_door).await;
    // NOT_REGISTERED: relaying before registering.
    web.send("message", Some(json!("early")), Some(1)).await;
    web.expect_error("NOT_REGISTERED", Some(1)).await;
    app.send("syncto", Some(json!("early")), Some(2)).await;
    app.expect_error("NOT_REGISTERED", Some(2)).await;
    // BAD_REQUEST: an empty uid; a uid with control characters.
    web.send("register", Some(json!({"uid": "", "type": 0})), Some(3))
        .await;
    web.expect_error("BAD_REQUEST", Some(3)).await;
    web.send("register", Some(json!({"uid": "a\nb", "type": 0})), Some(4))
        .await;
    web.expect_error("BAD_REQUEST", Some(4)).await;
    web.send(
        "register",
        Some(json!({"uid": "x".repeat(129), "type": 0})),
        Some(5),
    )
    .await;
    web.expect_error("BAD_REQUEST", Some(5)).await;
    // NO_PEER: registered but alone.
    web.register("judy", "web").await;
    web.send("transfile", Some(json!({"size": 1, "name": "a"})), Some(6))
        .await;
    web.expect_error("NO_PEER", Some(6)).await;
    // ALREADY_REGISTERED: a second register on the same session.
    web.send(
        "register",
        Some(json!({"uid": "other", "type": 0})),
        Some(7),
    )
    .await;
    web.expect_error("ALREADY_REGISTERED", Some(7)).await;
    // WRONG_ROLE: syncto from web.
    app.register("judy", "app").await;
    app.expect("syncfrom").await;
    web.send("syncto", Some(json!({})), Some(8)).await;
    web.expect_error("WRONG_ROLE", Some(8)).await;
    // Errors leave the session usable.
    web.send("message", Some(json!("still here")), Some(9))
        .await;
    web.expect_ack(9).await;
    assert_eq!(app.expect("message").await, json!("still here"));
    // REPLACED is covered by the replacement scenarios.
    web.close().await;
    app.expect("byebye").await;
    app.close().await;
    gateway.assert_empty().await;
}

/// Without `--ice-server` nothing changes: no ICE fields, and `iceservers`
/// answers an empty list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ice_servers_nothing_changes() {
    let gateway = TestGateway::start().await;
    for door in [Door::Ws, Door::Grpc, Door::SocketIo] {
        let mut client = gateway.connect(door).await;
        let registered = client.register("lee", "web").await;
        let mut expected = json!({"uid": "lee", "role": "web", "type": 0, "peerPresent": false});
        if door != Door::SocketIo {
            expected["polite"] = json!(true);
        }
        assert_eq!(registered, expected, "{door}");
        client.send("iceservers", None, Some(1)).await;
        assert_eq!(
            client.expect("iceservers").await,
            json!({"iceServers": []}),
            "{door}"
        );
        client.expect_ack(1).await;
        client.close().await;
        gateway.assert_empty().await;
    }
}

#[tokio::test]
async fn sessions_on_different_uids_do_not_see_each_other() {
    let gateway = TestGateway::start().await;
    let (mut web_a, mut app_a) = paired(&gateway, "uid-a", Door::Ws, Door::Grpc).await;
    let (mut web_b, mut app_b) = paired(&gateway, "uid-b", Door::Grpc, Door::Ws).await;
    web_a.send("message", Some(json!("for a")), None).await;
    web_b.send("message", Some(json!("for b")), None).await;
    assert_eq!(app_a.expect("message").await, json!("for a"));
    assert_eq!(app_b.expect("message").await, json!("for b"));
    app_a.expect_silence().await;
    app_b.expect_silence().await;
    assert_eq!(gateway.census().registry.pairs, 2);
    for client in [web_a, app_a, web_b, app_b] {
        client.close().await;
    }
    gateway.assert_empty().await;
}

//! Signed webhooks (docs/HOOKS.md) to a real HTTP receiver: every event of
//! a pair's life on every pair of doors (one node and two), signatures
//! checked as a receiver would, retries with the same id in order, a
//! receiver that hangs, and a node killed with -9.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{RedisServer, TEST_NODE_TTL, TestCluster, Topology};
use common::receiver::{Behaviour, Receiver, verify};
use common::{TestGateway, http_get, paired, test_config};
use serde_json::{Value, json};
use signalgate_client::{Door, Incoming};

include!("common/across_doors.rs");

across_doors!(a_pair_lifecycle_is_reported_in_order);

const SECRET: &str = "webhook-secret-for-tests";
const WAIT: Duration = Duration::from_secs(10);

fn hooked(receiver: &Receiver) -> signalgate::Config {
    signalgate::Config {
        webhook_url: Some(receiver.url()),
        webhook_secret: Some(SECRET.into()),
        ..test_config()
    }
}

/// Waits for the next accepted event, which must be `kind`; returns it.
async fn next(receiver: &Receiver, seen: &mut usize, kind: &str) -> Value {
    let events = receiver.wait_for(*seen + 1, WAIT).await;
    let event = events[*seen].clone();
    *seen += 1;
    assert_eq!(event["type"], kind, "event {seen}: {event:#}");
    event
}

/// Register, pair, drop, resume, leave: each event once, in order, with
/// the fields of docs/HOOKS.md; every body signed.
async fn a_pair_lifecycle_is_reported_in_order(topology: Topology, web_door: Door, app_door: Door) {
    let receiver = Receiver::start(Behaviour::Accept).await;
    let gateway = topology.start_with(hooked(&receiver)).await;
    let mut seen = 0;
    let mut web = gateway.web(web_door).await;
    web.register("hana", "web").await;
    let web_session = web.welcome["id"].as_str().expect("id").to_owned();
    let registered = next(&receiver, &mut seen, "session.registered").await;
    assert_eq!(registered["uid"], "hana");
    assert_eq!(registered["role"], "web");
    assert_eq!(registered["session"], web_session);
    assert_eq!(registered["peer_session"], Value::Null);
    assert_eq!(registered["door"], web_door.as_str());
    assert_eq!(registered["reason"], Value::Null);
    assert!(registered["node"].as_str().is_some_and(|n| !n.is_empty()));
    let at = registered["at"].as_str().expect("at");
    assert!(at.ends_with('Z') && at.contains('.'), "{at}");

    let mut app = gateway.app(app_door).await;
    app.register("hana", "app").await;
    app.expect("syncfrom").await;
    let app_session = app.welcome["id"].as_str().expect("id").to_owned();
    let registered = next(&receiver, &mut seen, "session.registered").await;
    assert_eq!(registered["role"], "app");
    assert_eq!(registered["peer_session"], web_session);
    let started = next(&receiver, &mut seen, "pair.started").await;
    assert_eq!(started["session"], app_session);
    assert_eq!(started["peer_session"], web_session);
    assert_eq!(started["door"], app_door.as_str());

    // The app's network drops; it comes back (with two nodes, on the
    // other node).
    let token = app.resume_token();
    let last_seq = app.last_seq;
    app.abort();
    web.expect("peer_away").await;
    let away = next(&receiver, &mut seen, "peer.away").await;
    assert_eq!(away["session"], app_session);
    assert_eq!(away["peer_session"], web_session);
    let mut app = gateway.app(app_door).await;
    app.send(
        "resume",
        Some(json!({"token": token, "last_seq": last_seq})),
        Some(1),
    )
    .await;
    app.expect("resumed").await;
    app.expect_ack(1).await;
    web.expect("peer_back").await;
    let back = next(&receiver, &mut seen, "peer.back").await;
    assert_eq!(back["session"], app_session);
    assert_eq!(back["door"], app_door.as_str());

    web.close().await;
    app.expect("byebye").await;
    let ended = next(&receiver, &mut seen, "pair.ended").await;
    assert_eq!(ended["session"], web_session);
    assert_eq!(ended["peer_session"], app_session);
    assert_eq!(ended["reason"], "client_closed");
    let ended = next(&receiver, &mut seen, "session.ended").await;
    assert_eq!(ended["session"], web_session);
    app.close().await;
    let ended = next(&receiver, &mut seen, "session.ended").await;
    assert_eq!(ended["session"], app_session);
    assert_eq!(ended["peer_session"], Value::Null);
    assert_eq!(ended["reason"], "client_closed");
    gateway.assert_empty().await;

    // Nothing more, each id once, epochs rising, every body signed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let received = receiver.received();
    assert_eq!(received.len(), 8, "{received:#?}");
    let mut ids: Vec<String> = received
        .iter()
        .map(|r| r.json()["id"].to_string())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 8);
    let epochs: Vec<u64> = received
        .iter()
        .map(|r| r.json()["epoch"].as_u64().expect("epoch"))
        .collect();
    assert!(epochs.windows(2).all(|w| w[0] < w[1]), "{epochs:?}");
    for post in &received {
        assert_eq!(post.content_type, "application/json");
        verify(SECRET, post).unwrap_or_else(|e| panic!("{e}: {post:?}"));
        assert!(verify("another secret", post).is_err());
    }
}

/// A receiver that fails three times: the event is retried with the same
/// id, and the uid's later events wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried_with_the_same_id_in_order() {
    let receiver = Receiver::start(Behaviour::FailFirst(3)).await;
    let gateway = TestGateway::start_with(hooked(&receiver)).await;
    let (web, app) = paired(&gateway, "rita", Door::Ws, Door::Grpc).await;
    let events = receiver.wait_for(3, WAIT).await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        ["session.registered", "session.registered", "pair.started"]
    );
    let received = receiver.received();
    let first_id = received[0].json()["id"].clone();
    assert!(
        received[..4].iter().all(|r| r.json()["id"] == first_id),
        "the first event's four attempts carry one id"
    );
    // The retries waited (backoff), and the later events came after them.
    assert!(received[3].at > received[0].at + Duration::from_millis(50));
    assert_eq!(received.len(), 6);
    common::finish(gateway, web, app).await;
}

/// A receiver that never answers: relaying goes on at full speed, the
/// queue stays within its bound, and what does not fit is dropped and
/// counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_slows_nothing_and_drops_are_counted() {
    let receiver = Receiver::start(Behaviour::Hang).await;
    let gateway = TestGateway::start_with(signalgate::Config {
        webhook_queue: 16,
        webhook_timeout: Duration::from_millis(300),
        webhook_max_attempts: 2,
        ..hooked(&receiver)
    })
    .await;
    let mut clients = Vec::new();
    for n in 0..20 {
        let (web, app) = paired(&gateway, &format!("hang-{n}"), Door::Ws, Door::Ws).await;
        clients.push((web, app));
    }
    let (web, app) = &mut clients[0];
    let started = Instant::now();
    for batch in 0..10 {
        for n in 0..50 {
            web.send("message", Some(json!(batch * 50 + n)), None).await;
        }
        for n in 0..50 {
            assert_eq!(app.expect("message").await, json!(batch * 50 + n));
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "relaying was held up: {:?}",
        started.elapsed()
    );
    let metrics = http_get(&gateway, "/metrics").await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        value("signalgate_webhook_dropped_total{reason=\"queue_full\"}") >= 1.0,
        "{metrics}"
    );
    // At most the queue plus one event in flight per lane.
    assert!(value("signalgate_webhook_queue_depth") <= (16 + signalgate::hooks::LANES) as f64);
    for (web, mut app) in clients {
        web.close().await;
        app.expect("byebye").await;
        app.close().await;
    }
    gateway.stop().await;
}

/// A receiver answering with a redirect: never followed (a 302 would turn
/// the POST into a GET without the body, a 307 would send the signed body
/// wherever `Location` says). Each attempt fails, and the event is dropped
/// after the last one; nothing reaches the redirect's target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_failed_deliveries_never_followed() {
    for status in [301, 302, 303, 307, 308] {
        let receiver = Receiver::start(Behaviour::Redirect(status)).await;
        let gateway = TestGateway::start_with(signalgate::Config {
            webhook_max_attempts: 2,
            ..hooked(&receiver)
        })
        .await;
        let mut web = gateway.connect(Door::Ws).await;
        web.register(&format!("redirected-{status}"), "web").await;
        let deadline = Instant::now() + WAIT;
        while receiver.received().len() < 2 {
            assert!(Instant::now() < deadline, "{status}: no second attempt");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The second attempt was the last: nothing more comes.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(receiver.received().len(), 2, "{status}: two attempts");
        assert_eq!(receiver.landed(), 0, "{status}: a redirect was followed");
        web.close().await;
        gateway.stop().await;
    }
}

/// A node killed with -9: the survivor reaps its sessions and reports
/// their end exactly once (and the dead node, being dead, reports nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_sessions_are_reported_once_by_the_reaper() {
    let receiver = Receiver::start(Behaviour::Accept).await;
    let redis = RedisServer::start().await;
    let survivor = TestCluster::node(&redis, hooked(&receiver)).await;
    let ttl = format!("{}ms", TEST_NODE_TTL.as_millis());
    let url = receiver.url();
    let (mut doomed, address) = common::spawn_gateway(&[
        "--redis-url",
        &redis.url(),
        "--node-ttl",
        &ttl,
        "--webhook-url",
        &url,
        "--webhook-secret",
        SECRET,
    ]);
    let mut victim = common::connected(Door::Ws, address, None).await;
    victim
        .send(&signalgate_client::envelope(
            "register",
            Some(json!({"uid": "doomed", "type": 0})),
            None,
        ))
        .await
        .expect("send");
    match victim.recv().await.expect("registered") {
        Incoming::Event(event) => assert_eq!(event["event"], "registered"),
        other => panic!("{other:?}"),
    }
    let mut app = survivor.connect(Door::Grpc).await;
    app.register("doomed", "app").await;
    app.expect("syncfrom").await;
    receiver.wait_for(3, WAIT).await;
    doomed.kill().expect("kill -9");
    doomed.wait().expect("reaped");
    app.expect("byebye").await;
    let events = receiver.wait_for(5, WAIT).await;
    // The two nodes' first events may arrive in either order.
    let web_session = events[..3]
        .iter()
        .find(|e| e["type"] == "session.registered" && e["role"] == "web")
        .map(|e| e["session"].clone())
        .expect("the web's registration");
    let tail: Vec<(&str, &Value, &Value)> = events[3..]
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or(""),
                &e["session"],
                &e["reason"],
            )
        })
        .collect();
    assert_eq!(
        tail,
        [
            ("pair.ended", &web_session, &json!("node_lost")),
            ("session.ended", &web_session, &json!("node_lost")),
        ]
    );
    assert_eq!(events[3]["node"], survivor.hub.node_name());
    assert_eq!(events[3]["door"], Value::Null);
    // Exactly once: nothing more arrives after a few more reaper passes.
    tokio::time::sleep(TEST_NODE_TTL * 2).await;
    assert_eq!(receiver.accepted().len(), 5, "{:#?}", receiver.accepted());
    app.close().await;
    receiver.wait_for(6, WAIT).await;
    survivor.stop().await;
}

/// Calls' outcomes as signed webhooks, sent by the node where the web
/// session lives: `call.connected` (both sides joined), `call.failed`
/// (with the reason), `call.ended` (with the duration), in that order.
async fn calls_are_reported(topology: Topology, web_door: Door, app_door: Door) {
    let receiver = Receiver::start(Behaviour::Accept).await;
    let gateway = topology.start_with(hooked(&receiver)).await;
    let (mut web, mut app) = paired(&gateway, "kai", web_door, app_door).await;
    let mut seen = 3; // two session.registered, one pair.started
    receiver.wait_for(seen, WAIT).await;
    web.send(
        "callreport",
        Some(json!({"call": "k-1", "result": "connected", "path": "host", "setupMs": 700})),
        Some(1),
    )
    .await;
    web.expect_ack(1).await;
    app.send(
        "callreport",
        Some(json!({"call": "k-1", "result": "connected", "path": "host", "setupMs": 650})),
        Some(2),
    )
    .await;
    app.expect_ack(2).await;
    let connected = next(&receiver, &mut seen, "call.connected").await;
    assert_eq!(connected["uid"], "kai");
    assert_eq!(connected["call"], "k-1");
    assert_eq!(connected["path"], "host");
    assert_eq!(connected["setupMs"], 700);
    assert_eq!(connected["durationMs"], Value::Null);
    assert_eq!(connected["one_sided"], false);
    assert_eq!(connected["web_door"], web_door.as_str());
    assert_eq!(connected["app_door"], app_door.as_str());
    app.send(
        "callreport",
        Some(json!({"call": "k-2", "result": "failed", "reason": "ICE failed"})),
        Some(3),
    )
    .await;
    app.expect_ack(3).await;
    web.send(
        "callreport",
        Some(json!({"call": "k-2", "result": "failed", "setupMs": 10000, "reason": "timeout"})),
        Some(4),
    )
    .await;
    web.expect_ack(4).await;
    let failed = next(&receiver, &mut seen, "call.failed").await;
    assert_eq!(failed["call"], "k-2");
    assert_eq!(
        failed["reason"], "timeout",
        "the web side's reason comes first"
    );
    app.send(
        "callreport",
        Some(json!({"call": "k-1", "result": "closed", "durationMs": 42000})),
        Some(5),
    )
    .await;
    app.expect_ack(5).await;
    let ended = next(&receiver, &mut seen, "call.ended").await;
    assert_eq!(ended["call"], "k-1");
    assert_eq!(ended["durationMs"], 42000);
    // Every call hook comes from the web session's node.
    let nodes: Vec<Value> = [&connected, &failed, &ended]
        .iter()
        .map(|hook| hook["node"].clone())
        .collect();
    let web_node = receiver
        .received()
        .iter()
        .map(|post| post.json())
        .find(|hook| hook["type"] == "session.registered" && hook["role"] == "web")
        .expect("the web's registration")["node"]
        .clone();
    assert!(nodes.iter().all(|node| *node == web_node), "{nodes:?}");
    for post in receiver.received() {
        verify(SECRET, &post).unwrap_or_else(|e| panic!("{e}: {post:?}"));
    }
    web.close().await;
    app.expect("byebye").await;
    app.close().await;
    gateway.assert_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_reported_as_webhooks_on_one_node() {
    calls_are_reported(Topology::Single, Door::SocketIo, Door::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_reported_as_webhooks_from_the_web_sessions_node() {
    calls_are_reported(Topology::TwoNodes, Door::Ws, Door::Grpc).await;
}

//! Several nodes over one real Redis: races, node death, Redis outage.
//! (The scenario suite also runs every scenario split over two nodes.)

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::cluster::{RedisServer, TEST_NODE_TTL, TestCluster, Topology};
use common::{EVENT_TIMEOUT, SILENCE, TestClient, TestGateway, http_get, paired, test_config};
use serde_json::{Value, json};
use signalgate_client::{Door, Incoming};

/// Everything a client receives until it is closed or `quiet` passes with
/// nothing new; and whether it was closed.
async fn drain(client: &mut TestClient, quiet: Duration) -> (Vec<Value>, bool) {
    let mut events = Vec::new();
    loop {
        match tokio::time::timeout(quiet, client.client.recv()).await {
            Ok(Ok(Incoming::Event(event))) => events.push(event),
            Ok(Ok(Incoming::Closed(_)) | Err(_)) => return (events, true),
            Err(_) => return (events, false),
        }
    }
}

fn is_replaced(event: &Value) -> bool {
    event["event"] == "error" && event["data"]["code"] == "REPLACED"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_registrations_on_two_nodes_have_exactly_one_winner() {
    let cluster = TestCluster::start(2).await;
    let doors = [Door::Ws, Door::Grpc, Door::SocketIo];
    for round in 0..12 {
        let uid = format!("race-{round}");
        let mut first = cluster.nodes[0].connect(doors[round % 3]).await;
        let mut second = cluster.nodes[1].connect(doors[(round + 1) % 3]).await;
        let register = json!({"uid": uid, "type": 0});
        // Both requests leave at once.
        tokio::join!(
            first.send("register", Some(register.clone()), Some(1)),
            second.send("register", Some(register.clone()), Some(1)),
        );
        let ((first_events, first_closed), (second_events, second_closed)) = tokio::join!(
            drain(&mut first, Duration::from_secs(1)),
            drain(&mut second, Duration::from_secs(1)),
        );
        let first_lost = first_events.iter().any(is_replaced);
        let second_lost = second_events.iter().any(is_replaced);
        assert!(
            first_lost != second_lost,
            "round {round}: exactly one loser; first {first_events:?}, second {second_events:?}"
        );
        assert_eq!(
            first_lost, first_closed,
            "the loser is closed, the winner not"
        );
        assert_eq!(
            second_lost, second_closed,
            "the loser is closed, the winner not"
        );
        let mut winner = if first_lost { second } else { first };
        // The winner holds the role: an app on either node pairs with it.
        let mut app = cluster.nodes[round % 2].connect(Door::Ws).await;
        let registered = app.register(&uid, "app").await;
        assert_eq!(registered["peerPresent"], true, "round {round}");
        app.expect("syncfrom").await;
        app.send("message", Some(json!(round)), Some(2)).await;
        app.expect_ack(2).await;
        assert_eq!(winner.expect("message").await, json!(round));
        winner.close().await;
        app.expect("byebye").await;
        app.close().await;
    }
    cluster.assert_empty().await;
}

/// A web and an app registering at the same instant, on two nodes, on one
/// node of a Redis registry, or on one gateway with the in-memory registry:
/// however the two binds interleave, the app receives `registered` and then
/// exactly one `syncfrom`, and the pair relays. (The bind that comes second
/// sends the first session `syncfrom` while that session's own
/// registration may still be being answered, on its node or another: the
/// event waits for the answer instead of being dropped or overtaking it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_registrations_always_pair() {
    let cluster = TestCluster::start(2).await;
    let single = TestGateway::start().await;
    let doors = [Door::Ws, Door::Grpc, Door::SocketIo];
    // Every door pair four times, on one node and across two, then on the
    // in-memory registry.
    for round in 0..45 {
        let uid = format!("together-{round}");
        let (web_node, app_node) = match round {
            0..36 => (&cluster.nodes[round % 2], &cluster.nodes[(round / 2) % 2]),
            _ => (&single, &single),
        };
        let mut web = web_node.connect(doors[round % 3]).await;
        let mut app = app_node.connect(doors[(round / 3) % 3]).await;
        tokio::join!(
            web.send("register", Some(json!({"uid": uid, "type": 0})), None),
            app.send("register", Some(json!({"uid": uid, "type": 1})), None),
        );
        let (app_events, app_closed) = drain(&mut app, Duration::from_millis(300)).await;
        let names: Vec<&str> = app_events
            .iter()
            .filter_map(|event| event["event"].as_str())
            .collect();
        assert!(!app_closed, "round {round}: {names:?}");
        assert_eq!(
            names.first(),
            Some(&"registered"),
            "round {round}: {names:?}"
        );
        assert_eq!(
            names.iter().filter(|name| **name == "syncfrom").count(),
            1,
            "round {round} ({} web, {} app): {names:?}",
            doors[round % 3],
            doors[(round / 3) % 3],
        );
        web.expect("registered").await;
        web.send("message", Some(json!(round)), None).await;
        assert_eq!(app.expect("message").await, json!(round));
        web.close().await;
        app.expect("byebye").await;
        app.close().await;
    }
    cluster.assert_empty().await;
    single.assert_empty().await;
    single.stop().await;
}

/// Starts the real binary as a cluster node; returns it and its address.
fn start_node(redis: &RedisServer) -> (std::process::Child, SocketAddr) {
    let ttl = format!("{}ms", TEST_NODE_TTL.as_millis());
    common::spawn_gateway(&["--redis-url", &redis.url(), "--node-ttl", &ttl])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_frees_its_sessions_and_peers_get_byebye_in_time() {
    let redis = RedisServer::start().await;
    let survivor = TestCluster::node(&redis, test_config()).await;
    let (mut doomed, address) = start_node(&redis);
    // Three pairs split over the nodes, one per door on the doomed side.
    let mut survivors = Vec::new();
    let mut victims = Vec::new();
    for (n, door) in Door::ALL.into_iter().enumerate() {
        let uid = format!("split-{n}");
        let mut victim = common::connected(door, address, None).await;
        victim
            .send(&signalgate_client::envelope(
                "register",
                Some(json!({"uid": uid, "type": n % 2})),
                None,
            ))
            .await
            .expect("send");
        match victim.recv().await.expect("registered") {
            Incoming::Event(event) => assert_eq!(event["event"], "registered"),
            other => panic!("{other:?}"),
        }
        let mut peer = survivor.connect(Door::ALL[(n + 1) % 3]).await;
        let role = if n % 2 == 0 { "app" } else { "web" };
        let registered = peer.register(&uid, role).await;
        assert_eq!(registered["peerPresent"], true);
        if role == "app" {
            peer.expect("syncfrom").await;
        }
        // The pair relays across the nodes.
        peer.send("message", Some(json!("before")), Some(1)).await;
        peer.expect_ack(1).await;
        survivors.push(peer);
        victims.push(victim);
    }
    let killed_at = Instant::now();
    doomed.kill().expect("kill -9");
    doomed.wait().expect("reaped");
    // Bound (docs/CLUSTER.md): node TTL + TTL/3 for the next reaper pass,
    // plus delivery; the test allows one more interval for a busy machine.
    let bound = TEST_NODE_TTL + TEST_NODE_TTL / 3 + TEST_NODE_TTL / 3 + Duration::from_millis(500);
    for peer in &mut survivors {
        let remaining = bound.saturating_sub(killed_at.elapsed());
        let event = tokio::time::timeout(remaining, peer.next_event())
            .await
            .unwrap_or_else(|_| panic!("no byebye within {bound:?}"));
        assert_eq!(event["event"], "byebye", "{event}");
    }
    println!("byebye after {:?} (bound {bound:?})", killed_at.elapsed());
    // The freed roles can be taken again, and relays say NO_PEER.
    for (n, peer) in survivors.iter_mut().enumerate() {
        peer.send("message", Some(json!("anyone?")), Some(9)).await;
        peer.expect_error("NO_PEER", Some(9)).await;
        let uid = format!("split-{n}");
        let mut replacement = survivor.connect(Door::Ws).await;
        let role = if n % 2 == 0 { "web" } else { "app" };
        let registered = replacement.register(&uid, role).await;
        assert_eq!(registered["peerPresent"], true);
        if role == "web" {
            peer.expect("syncfrom").await;
        }
        replacement.close().await;
        peer.expect("byebye").await;
    }
    drop(victims);
    for peer in survivors {
        peer.close().await;
    }
    survivor.assert_empty().await;
    assert!(redis.keys("signalgate:uid:*").await.is_empty());
    assert!(redis.keys("signalgate:node:*:sessions").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_tells_remote_peers_byebye_at_once() {
    // Without resumption there is no hand-over: the old shutdown.
    let mut cluster = TestCluster::start_with(
        2,
        signalgate::Config {
            resume_window: Duration::ZERO,
            ..test_config()
        },
    )
    .await;
    let (web, mut app) = paired(
        &cluster_pair_picker(&cluster),
        "leaving",
        Door::Grpc,
        Door::Ws,
    )
    .await;
    let leaving = cluster.nodes.remove(0);
    let started = Instant::now();
    leaving.stop().await;
    app.expect("byebye").await;
    assert!(started.elapsed() < EVENT_TIMEOUT);
    drop(web);
    app.close().await;
    cluster.assert_empty().await;
}

/// With resumption a stopping node drains (tests/drain.rs): a session whose
/// client does not come back is ended within the grace, and its peer then
/// hears `byebye`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_nodes_session_that_never_resumes_ends_within_the_grace() {
    let mut cluster = TestCluster::start(2).await;
    let (web, mut app) = paired(
        &cluster_pair_picker(&cluster),
        "not-coming-back",
        Door::Grpc,
        Door::Ws,
    )
    .await;
    let leaving = cluster.nodes.remove(0);
    let started = Instant::now();
    let stopped = tokio::spawn(leaving.stop());
    app.expect("peer_away").await;
    let bye = tokio::time::timeout(Duration::from_secs(10), app.next_event())
        .await
        .expect("byebye within the grace");
    assert_eq!(bye["event"], "byebye", "{bye}");
    stopped.await.expect("stopped");
    // --shutdown-grace is 5 s in the tests.
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    drop(web);
    app.close().await;
    cluster.assert_empty().await;
}

/// Web on node 0, app on node 1.
fn cluster_pair_picker(cluster: &TestCluster) -> SplitPair<'_> {
    SplitPair(cluster)
}

struct SplitPair<'a>(&'a TestCluster);

impl common::Connect for SplitPair<'_> {
    async fn connect_as(&self, role: &str, door: Door) -> TestClient {
        let node = usize::from(role == "app");
        self.0.nodes[node].connect(door).await
    }
}

async fn ready(gateway: &TestGateway) -> bool {
    http_get(gateway, "/readyz")
        .await
        .starts_with("HTTP/1.1 200")
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_keeps_local_pairs_fails_cross_node_clearly_and_recovers() {
    let mut cluster = TestCluster::start(2).await;
    let split = SplitPair(&cluster);
    // A pair on one node, two pairs across the nodes.
    let (mut first_web, mut local_app) =
        paired(&cluster.nodes[0], "local", Door::Ws, Door::Grpc).await;
    // A replacement bumps the uid's binding epoch past what a Redis that
    // comes back empty would start from.
    let mut local_web = cluster.nodes[0].connect(Door::Ws).await;
    local_web.register("local", "web").await;
    first_web.expect_error("REPLACED", None).await;
    local_app.expect("syncfrom").await;
    drop(first_web);
    let (mut far_web, mut far_app) = paired(&split, "far", Door::Grpc, Door::SocketIo).await;
    let (ending_web, mut orphan_app) = paired(&split, "ending", Door::Ws, Door::Ws).await;
    far_web
        .send("message", Some(json!("warm-up")), Some(1))
        .await;
    far_web.expect_ack(1).await;
    assert_eq!(far_app.expect("message").await, json!("warm-up"));
    assert!(ready(&cluster.nodes[0]).await);

    cluster.redis.kill();

    // A cross-node relay fails with UNAVAILABLE, never silently.
    far_web.send("message", Some(json!("lost?")), Some(2)).await;
    far_web.expect_error("UNAVAILABLE", Some(2)).await;
    far_app.send("message", Some(json!("lost?")), Some(3)).await;
    far_app.expect_error("UNAVAILABLE", Some(3)).await;
    // Both nodes report not ready.
    for node in &cluster.nodes {
        wait_until("/readyz fails", async || !ready(node).await).await;
        let metrics = http_get(node, "/metrics").await;
        assert!(
            metrics.contains("signalgate_registry_available 0"),
            "{metrics}"
        );
    }
    // Registration needs Redis.
    let mut newcomer = cluster.nodes[0].connect(Door::Ws).await;
    newcomer
        .send("register", Some(json!({"uid": "new", "type": 0})), Some(4))
        .await;
    newcomer.expect_error("UNAVAILABLE", Some(4)).await;
    // The same-node pair keeps relaying both ways.
    for n in 0..20 {
        local_web
            .send("message", Some(json!(n)), Some(10 + n))
            .await;
        local_web.expect_ack(10 + n).await;
        assert_eq!(local_app.expect("message").await, json!(n));
        local_app.send("message", Some(json!(n)), None).await;
        assert_eq!(local_web.expect("message").await, json!(n));
    }
    // A session ends during the outage: its remote peer hears nothing yet.
    ending_web.close().await;
    orphan_app.expect_silence().await;

    // Redis comes back empty: the nodes resubscribe and re-assert.
    cluster.redis.restart().await;
    for node in &cluster.nodes {
        wait_until("/readyz recovers", async || ready(node).await).await;
        let metrics = http_get(node, "/metrics").await;
        assert!(
            metrics.contains("signalgate_registry_available 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("signalgate_cluster_frames_total{kind=\"deliver\",direction=\"out\"}"),
            "{metrics}"
        );
    }
    // The peer of the session that ended meanwhile is told.
    let event = tokio::time::timeout(Duration::from_secs(5), orphan_app.next_event())
        .await
        .expect("byebye after Redis returned");
    assert_eq!(event["event"], "byebye", "{event}");
    // Cross-node relays work again (once both nodes re-asserted).
    let mut id = 100;
    wait_until("cross-node relay resumes", async || {
        id += 1;
        far_web
            .send("message", Some(json!("again")), Some(id))
            .await;
        let event = far_web.next_event().await;
        event["event"] == "ack"
    })
    .await;
    assert_eq!(far_app.expect("message").await, json!("again"));
    far_app.send("message", Some(json!("back")), Some(7)).await;
    far_app.expect_ack(7).await;
    assert_eq!(far_web.expect("message").await, json!("back"));
    // Registration works again, and sees the re-asserted state.
    newcomer
        .send(
            "register",
            Some(json!({"uid": "local", "type": 0})),
            Some(5),
        )
        .await;
    let registered = newcomer.expect("registered").await;
    assert_eq!(registered["peerPresent"], true);
    newcomer.expect_ack(5).await;
    local_web.expect_error("REPLACED", None).await;
    // Clean up: nothing may leak in Redis or on the nodes.
    drop(local_web);
    local_app.expect("syncfrom").await;
    newcomer.close().await;
    local_app.expect("byebye").await;
    local_app.close().await;
    far_web.close().await;
    far_app.expect("byebye").await;
    far_app.close().await;
    orphan_app.close().await;
    tokio::time::sleep(SILENCE).await;
    cluster.assert_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_on_another_node_hands_the_session_over_and_fails_cleanly_when_it_cannot() {
    let mut cluster = TestCluster::start(2).await;
    let split = SplitPair(&cluster);
    let (mut web, app) = paired(&split, "traveller", Door::Ws, Door::Grpc).await;
    let token = app.resume_token();
    let last_seq = app.last_seq;
    app.abort();
    web.expect("peer_away").await;
    web.send("message", Some(json!("while away")), Some(1))
        .await;
    web.expect_ack(1).await;
    // Back on the web's node: the session moves there, with what it missed.
    let mut back = cluster.nodes[0].connect(Door::SocketIo).await;
    back.send(
        "resume",
        Some(json!({"token": token, "last_seq": last_seq})),
        Some(2),
    )
    .await;
    let resumed = back.expect("resumed").await;
    assert_eq!(resumed["replayed"], 1);
    assert_eq!(back.expect("message").await, json!("while away"));
    back.expect_ack(2).await;
    web.expect("peer_back").await;
    assert_eq!(cluster.nodes[1].census().registry.bound_sessions, 0);
    assert_eq!(cluster.nodes[0].census().registry.bound_sessions, 2);
    // The spent token cannot be used again, on either node.
    for node in 0..2 {
        let mut again = cluster.nodes[node].connect(Door::Ws).await;
        again
            .send(
                "resume",
                Some(json!({"token": token, "last_seq": 0})),
                Some(3),
            )
            .await;
        again.expect_error("RESUME_FAILED", Some(3)).await;
        again.close().await;
    }
    // A token of a node that has gone fails cleanly too.
    let (other_web, other_app) = paired(&SplitPair(&cluster), "stranded", Door::Ws, Door::Ws).await;
    let stranded = other_app.resume_token();
    other_app.abort();
    other_web.close().await;
    let leaving = cluster.nodes.remove(1);
    leaving.stop().await;
    let mut late = cluster.nodes[0].connect(Door::Grpc).await;
    late.send(
        "resume",
        Some(json!({"token": stranded, "last_seq": 0})),
        Some(4),
    )
    .await;
    late.expect_error("RESUME_FAILED", Some(4)).await;
    late.close().await;
    back.close().await;
    web.expect("byebye").await;
    web.close().await;
    cluster.assert_empty().await;
}

/// `peer_away` at register and `peer_back` when an away session is
/// replaced: the same on one node and across nodes.
async fn away_state_is_seen_wherever_the_peer_is(topology: Topology) {
    let gateway = topology.start().await;
    // Web on the first node, app on the second.
    let (mut first_web, app) = paired(&gateway, "away", Door::Ws, Door::Grpc).await;
    app.abort();
    first_web.expect("peer_away").await;
    // A new web (on the second node) learns at once that its peer is away.
    let mut web = gateway.web(Door::SocketIo).await;
    let registered = web.register("away", "web").await;
    assert_eq!(registered["peerPresent"], true);
    web.expect("peer_away").await;
    first_web.expect_error("REPLACED", None).await;
    drop(first_web);
    // A new app (on the first node) replaces the away one: the web hears
    // that its peer is back.
    let mut new_app = gateway.app(Door::Ws).await;
    let registered = new_app.register("away", "app").await;
    assert_eq!(registered["peerPresent"], true);
    new_app.expect("syncfrom").await;
    web.expect("peer_back").await;
    new_app.send("message", Some(json!("hello")), Some(1)).await;
    new_app.expect_ack(1).await;
    assert_eq!(web.expect("message").await, json!("hello"));
    web.close().await;
    new_app.expect("byebye").await;
    new_app.close().await;
    gateway.assert_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn away_state_on_one_node() {
    away_state_is_seen_wherever_the_peer_is(Topology::Single).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn away_state_across_nodes() {
    away_state_is_seen_wherever_the_peer_is(Topology::TwoNodes).await;
}

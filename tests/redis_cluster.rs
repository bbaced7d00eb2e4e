//! Two gateway nodes over a real Redis Cluster (three primaries, three
//! replicas) while a primary is killed: every request in the gap is
//! answered, nothing acknowledged is lost or applied twice, and
//! registration and cross-node relay come back without restarting a
//! gateway. (The scenario suites also run over a Redis Cluster:
//! `every_scenario_over_a_redis_cluster` in each of them.)

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::cluster::assert_no_pairing_state;
use common::redis_cluster::RedisCluster;
use common::{TestClient, TestGateway, test_config};
use serde_json::json;
use signalgate_client::{Door, Incoming};

const PAIRS: usize = 12;
const DOORS: [Door; 3] = [Door::Ws, Door::Grpc, Door::SocketIo];

/// How a request was answered.
#[derive(Debug, PartialEq)]
enum Answer {
    Ack,
    Error(String),
}

/// The answer to request `id` (the web side receives nothing else here).
async fn answer(client: &mut TestClient, id: u64) -> Answer {
    let event = client.next_event().await;
    assert_eq!(event["id"], id, "{event}");
    match event["event"].as_str() {
        Some("ack") => Answer::Ack,
        Some("error") => Answer::Error(event["data"]["code"].as_str().unwrap_or("").to_owned()),
        _ => panic!("expected the answer to {id}, got {event}"),
    }
}

/// Every `message` payload that arrives until a second of silence.
async fn received(client: &mut TestClient) -> Vec<String> {
    let mut payloads = Vec::new();
    while let Ok(incoming) = tokio::time::timeout(Duration::from_secs(1), client.next()).await {
        match incoming {
            Incoming::Event(event) if event["event"] == "message" => {
                payloads.push(event["data"].as_str().unwrap_or("").to_owned());
            }
            Incoming::Event(event) => panic!("unexpected {event}"),
            Incoming::Closed(closed) => panic!("closed: {closed:?}"),
        }
    }
    payloads
}

/// One pair, web on the first node and app on the second, and what the
/// web side sent and had acknowledged.
struct Pair {
    uid: String,
    web: TestClient,
    app: TestClient,
    sent: Vec<String>,
    acked: Vec<String>,
}

impl Pair {
    async fn open(nodes: &[TestGateway], uid: String, n: usize) -> Pair {
        let mut web = nodes[0].connect(DOORS[n % 3]).await;
        let mut app = nodes[1].connect(DOORS[(n / 3) % 3]).await;
        web.register(&uid, "web").await;
        app.register(&uid, "app").await;
        app.expect("syncfrom").await;
        Pair {
            uid,
            web,
            app,
            sent: Vec::new(),
            acked: Vec::new(),
        }
    }

    /// Sends one message; returns how it was answered.
    async fn relay(&mut self, id: u64) -> Answer {
        let payload = format!("{}#{id}", self.uid);
        self.web
            .send("message", Some(json!(payload)), Some(id))
            .await;
        self.sent.push(payload.clone());
        let answer = answer(&mut self.web, id).await;
        if answer == Answer::Ack {
            self.acked.push(payload);
        }
        answer
    }

    /// Relays until one is acknowledged (the registry may still be coming
    /// back): only `UNAVAILABLE` may be answered meanwhile.
    async fn relay_until_acked(&mut self, first_id: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut id = first_id;
        loop {
            match self.relay(id).await {
                Answer::Ack => return,
                Answer::Error(code) => {
                    assert_eq!(code, "UNAVAILABLE", "{}", self.uid);
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{}: relays never came back",
                        self.uid
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            id += 1;
        }
    }

    /// What arrived is what was sent, each once, and holds everything
    /// acknowledged.
    async fn check(&mut self) {
        let arrived = received(&mut self.app).await;
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for payload in &arrived {
            *seen.entry(payload).or_default() += 1;
            assert!(self.sent.contains(payload), "never sent: {payload}");
        }
        assert!(
            seen.values().all(|count| *count == 1),
            "{}: applied twice: {arrived:?}",
            self.uid
        );
        for payload in &self.acked {
            assert!(
                seen.contains_key(payload.as_str()),
                "acknowledged but lost: {payload}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_failing_over_loses_nothing_and_needs_no_restart() {
    let mut redis = RedisCluster::start().await;
    let config = signalgate::Config {
        redis_cluster_nodes: redis.urls(),
        // Longer than a failover (cluster-node-timeout 1 s plus the
        // election): a heartbeat key on the failing shard must not expire.
        node_ttl: Duration::from_secs(6),
        ..test_config()
    };
    let nodes = vec![
        TestGateway::start_with(config.clone()).await,
        TestGateway::start_with(config).await,
    ];
    let mut pairs = Vec::new();
    for n in 0..PAIRS {
        pairs.push(Pair::open(&nodes, format!("fo-{n}"), n).await);
    }
    for pair in &mut pairs {
        assert_eq!(pair.relay(1).await, Answer::Ack);
    }
    let victim = redis.primary_of("signalgate:uid:fo-0").await;
    let mut on_victim = 0;
    for pair in &pairs {
        if redis
            .primary_of(&format!("signalgate:uid:{}", pair.uid))
            .await
            == victim
        {
            on_victim += 1;
        }
    }
    assert!(on_victim >= 1);

    // The gap: the primary is gone, its replica not yet promoted. Every
    // request is answered (acknowledged, or refused UNAVAILABLE).
    let killed_at = std::time::Instant::now();
    let failing = redis.kill_and_fail_over(victim);
    let in_gap = async {
        let mut refused = 0;
        for pair in &mut pairs {
            match pair.relay(2).await {
                Answer::Ack => {}
                Answer::Error(code) => {
                    assert_eq!(code, "UNAVAILABLE", "{}", pair.uid);
                    refused += 1;
                }
            }
        }
        refused
    };
    let ((), refused) = tokio::join!(failing, in_gap);
    println!(
        "{on_victim} of {PAIRS} pairs on the killed primary; {refused} relays refused in the gap"
    );

    // Without restarting a gateway: relays come back on every pair...
    let promoted_after = killed_at.elapsed();
    for pair in &mut pairs {
        pair.relay_until_acked(10).await;
    }
    println!(
        "replica promoted {promoted_after:?} after the kill; every pair relaying again after {:?}",
        killed_at.elapsed()
    );
    // ...and a registration on the promoted replica's slots pairs and relays.
    let promoted = redis.primary_of("signalgate:uid:fo-0").await;
    assert_ne!(promoted, victim);
    let mut late = None;
    for n in 0..64 {
        let candidate = format!("late-{n}");
        if redis
            .primary_of(&format!("signalgate:uid:{candidate}"))
            .await
            == promoted
        {
            late = Some(Pair::open(&nodes, candidate, n).await);
            break;
        }
    }
    let mut late = late.expect("a uid on the promoted replica's slots");
    assert_eq!(late.relay(1).await, Answer::Ack);
    pairs.push(late);

    for pair in &mut pairs {
        pair.check().await;
    }
    for mut pair in pairs {
        pair.web.close().await;
        pair.app.expect("byebye").await;
        pair.app.close().await;
    }
    for node in &nodes {
        node.assert_empty().await;
    }
    let redis = &redis;
    assert_no_pairing_state(
        |pattern| async move { redis.keys(&pattern).await },
        "signalgate",
    )
    .await;
}

/// The node holding `client`'s session: its resume token is `<node>.…`.
fn node_of(client: &TestClient) -> String {
    client
        .resume_token()
        .split_once('.')
        .map(|(node, _)| node.to_owned())
        .expect("a token naming its node")
}

/// A node whose channel is on a primary that hangs (paused: it keeps its
/// connections and answers nothing) hears the other nodes again once a
/// replica took over, while the hung primary still sleeps: its probe finds
/// nobody subscribed on the new primary, and it subscribes there. The
/// receiving node is chosen so that none of the keys it reads or writes
/// (its heartbeat, the node set, its sessions index, the pair's uid, the
/// sender's heartbeat that it reads to reap dead nodes) is on that shard:
/// no command of its own fails, so only the probe can tell it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_channel_is_on_a_hung_primary_hears_again_before_it_wakes() {
    let mut redis = RedisCluster::start().await;
    let config = signalgate::Config {
        redis_cluster_nodes: redis.urls(),
        node_ttl: Duration::from_secs(6),
        ..test_config()
    };
    let sender = TestGateway::start_with(config.clone()).await;
    let sender_node = {
        let mut probe = sender.connect(Door::Ws).await;
        probe.register("hung-sender", "web").await;
        let node = node_of(&probe);
        probe.close().await;
        node
    };
    let mut found = None;
    for attempt in 0..40 {
        let receiver = TestGateway::start_with(config.clone()).await;
        let uid = format!("hung-{attempt}");
        let mut app = receiver.connect(Door::Ws).await;
        app.register(&uid, "app").await;
        let node = node_of(&app);
        let channel_primary = redis.primary_of(&format!("signalgate:node:{node}")).await;
        let mut own_keys = Vec::new();
        for key in [
            format!("signalgate:node:{node}:alive"),
            format!("signalgate:node:{node}:sessions"),
            "signalgate:nodes".to_owned(),
            format!("signalgate:uid:{uid}"),
            // Read by the receiver when it looks for dead nodes to reap.
            format!("signalgate:node:{sender_node}:alive"),
        ] {
            own_keys.push(redis.primary_of(&key).await);
        }
        if own_keys.contains(&channel_primary) {
            app.close().await;
            receiver.stop().await;
            continue;
        }
        found = Some((receiver, app, uid, channel_primary));
        break;
    }
    let (receiver, mut app, uid, victim) = found.expect("a node with its channel alone on a shard");
    let mut web = sender.connect(Door::Ws).await;
    web.register(&uid, "web").await;
    app.expect("syncfrom").await;
    let mut pair = Pair {
        uid,
        web,
        app,
        sent: Vec::new(),
        acked: Vec::new(),
    };
    assert_eq!(pair.relay(1).await, Answer::Ack);

    redis.hang_and_fail_over(victim).await;
    // Still asleep: only the receiving node's probe can move its
    // subscription to the promoted replica.
    pair.relay_until_acked(2).await;
    // A relay refused while the primary hung may still arrive when it
    // wakes (its `SPUBLISH` waited in the primary's input): `UNAVAILABLE`
    // says it may have. Woken before the check, so it counts as sent.
    redis.wake(victim);
    tokio::time::sleep(Duration::from_secs(1)).await;
    pair.check().await;

    pair.web.close().await;
    pair.app.expect("byebye").await;
    pair.app.close().await;
    sender.assert_empty().await;
    receiver.assert_empty().await;
}

/// A killed primary that comes back rejoins as a replica, and redis-rs
/// subscribes the node's channel on it again, beside the promoted
/// primary where it subscribed after the failover. A sharded channel's
/// messages reach its subscribers on every node of the shard, so the
/// gateway heard every frame twice: copies of frames with an asker were
/// dropped (`signalgate_cluster_frames_duplicate_total`, 212,891 in one
/// ten-minute chaos run), and the others (`syncfrom`, `peeraway`,
/// `byebye` for a session on this node) reached the client twice. The
/// node's probe hears itself twice, and the node subscribes afresh: one
/// subscription, on the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_subscribed_again_on_a_restarted_primary_subscribes_afresh() {
    let mut redis = RedisCluster::start().await;
    let config = signalgate::Config {
        redis_cluster_nodes: redis.urls(),
        ..test_config()
    };
    let gateway = TestGateway::start_with(config).await;
    let mut client = gateway.connect(Door::Ws).await;
    client.register("doubled", "web").await;
    let channel = format!("signalgate:node:{}", node_of(&client));
    // redis-rs subscribes on the restarted node in about four cycles of
    // five here (0.1–1 s after the restart): up to three cycles, until
    // one does.
    let mut doubled_cycles = 0;
    for _ in 0..3 {
        let victim = redis.primary_of(&channel).await;
        redis.kill_and_fail_over(victim).await;
        let promoted = redis.primary_of(&channel).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while redis.shard_subscribers(promoted, &channel).await != 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the node subscribed on the promoted primary"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        redis.restart(victim).await;
        let seen = one_subscription_on_the_primary(&redis, &channel, victim, promoted).await;
        println!("subscribers (restarted replica, primary) every 100 ms: {seen:?}");
        if seen.iter().any(|&(on_replica, _)| on_replica > 0) {
            doubled_cycles += 1;
            break;
        }
    }
    let metrics = common::http_get(&gateway, "/metrics").await;
    let doubled = metrics
        .lines()
        .find_map(|line| line.strip_prefix("signalgate_cluster_subscriptions_doubled_total "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        doubled >= f64::from(doubled_cycles),
        "a doubled subscription mended is counted: {metrics}"
    );

    client.close().await;
    gateway.assert_empty().await;
}

/// Waits until `channel` has one subscriber, on `primary`, and none on
/// `replica`, for four seconds in a row (at most 20 s); returns the
/// counts (replica, primary) seen every 100 ms.
async fn one_subscription_on_the_primary(
    redis: &RedisCluster,
    channel: &str,
    replica: u16,
    primary: u16,
) -> Vec<(i64, i64)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut steady_since = None;
    let mut seen = Vec::new();
    loop {
        let counts = (
            redis.shard_subscribers(replica, channel).await,
            redis.shard_subscribers(primary, channel).await,
        );
        seen.push(counts);
        let now = tokio::time::Instant::now();
        if counts == (0, 1) {
            if now.duration_since(*steady_since.get_or_insert(now)) >= Duration::from_secs(4) {
                return seen;
            }
        } else {
            steady_since = None;
        }
        assert!(
            now < deadline,
            "subscribers (on the restarted replica, on the primary) every 100 ms: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! Rolling restarts (docs/CLUSTER.md, "Rolling restarts"): a node that is
//! stopped drains by hand-over. Its sessions are told `reconnect`, resume
//! on the other node, and their peers see `peer_away` then `peer_back` —
//! never `byebye` — with nothing lost or applied twice.

mod common;

use std::time::{Duration, Instant};

use common::admin::{admin, admin_config};
use common::cluster::TestCluster;
use common::{TestClient, TestGateway, test_config};
use futures_util::future::join_all;
use serde_json::{Value, json};
use signalgate_client::{Closed, Door, Incoming};

/// One pair split over the nodes: `moving` is on the node that drains.
struct Pair {
    uid: String,
    moving: TestClient,
    staying: TestClient,
}

/// Pairs `count` uids over the two nodes, each split, doors mixed; each
/// pair relays once both ways.
async fn split_pairs(cluster: &TestCluster, count: usize, prefix: &str) -> Vec<Pair> {
    let mut pairs = Vec::with_capacity(count);
    for n in 0..count {
        let uid = format!("{prefix}-{n}");
        let (moving_role, staying_role) = if n % 2 == 0 {
            ("web", "app")
        } else {
            ("app", "web")
        };
        let mut moving = cluster.nodes[0].connect(Door::ALL[n % 3]).await;
        let mut staying = cluster.nodes[1].connect(Door::ALL[(n + 1) % 3]).await;
        moving.register(&uid, moving_role).await;
        staying.register(&uid, staying_role).await;
        // The app side is told `syncfrom` when the pair completes.
        let app = if moving_role == "app" {
            &mut moving
        } else {
            &mut staying
        };
        app.expect("syncfrom").await;
        pairs.push(Pair {
            uid,
            moving,
            staying,
        });
    }
    join_all(pairs.iter_mut().map(|pair| async move {
        pair.moving
            .send("message", Some(json!(format!("m1-{}", pair.uid))), None)
            .await;
        pair.staying
            .send("message", Some(json!(format!("s1-{}", pair.uid))), None)
            .await;
        assert_eq!(
            pair.staying.expect("message").await,
            json!(format!("m1-{}", pair.uid))
        );
        assert_eq!(
            pair.moving.expect("message").await,
            json!(format!("s1-{}", pair.uid))
        );
    }))
    .await;
    pairs
}

/// The moving client's side of a drain: `reconnect`, the close, a wait,
/// then a resume on `survivor`; returns the new connection and the events
/// that came with the resume.
async fn ride_out(mut moving: TestClient, survivor: &TestGateway) -> (TestClient, Vec<Value>) {
    let reconnect = moving.expect("reconnect").await;
    let token = reconnect["resume_token"]
        .as_str()
        .expect("resume_token")
        .to_owned();
    let after_ms = reconnect["after_ms"].as_u64().expect("after_ms");
    let last_seq = moving.last_seq;
    let door = moving.door;
    match moving.next().await {
        Incoming::Closed(Closed::WebSocket(frame)) => {
            assert_eq!(frame.map(|(code, _)| code), Some(4006));
        }
        Incoming::Closed(Closed::Grpc(code, _)) => assert_eq!(code, tonic::Code::Unavailable),
        Incoming::Closed(Closed::SocketIo(_)) => {}
        Incoming::Event(event) => panic!("{door}: expected the close, got {event}"),
    }
    tokio::time::sleep(Duration::from_millis(after_ms)).await;
    let mut back = survivor.connect(door).await;
    back.send(
        "resume",
        Some(json!({"token": token, "last_seq": last_seq})),
        Some(900),
    )
    .await;
    assert_eq!(back.next_event().await["event"], "resumed");
    // The replay, then the ack.
    let mut replayed = Vec::new();
    loop {
        let event = back.next_event().await;
        if event["event"] == "ack" && event["id"] == 900 {
            return (back, replayed);
        }
        replayed.push(event);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_hands_every_session_to_the_other_node() {
    let cluster = TestCluster::start_with(2, test_config()).await;
    let pairs = split_pairs(&cluster, 200, "drain").await;
    let TestCluster { redis, mut nodes } = cluster;
    let survivor = nodes.pop().expect("node 1");
    let draining = nodes.pop().expect("node 0");
    let started = Instant::now();
    let stopped = tokio::spawn(draining.stop());

    let results = join_all(pairs.into_iter().map(|pair| {
        let survivor = &survivor;
        async move {
            let Pair {
                uid,
                moving,
                mut staying,
            } = pair;
            let (moved, staying) = tokio::join!(ride_out(moving, survivor), async {
                staying.expect("peer_away").await;
                // Sent while the peer is between nodes: kept and replayed.
                staying
                    .send("message", Some(json!(format!("s2-{uid}"))), Some(7))
                    .await;
                // Its ack and the peer's return, in either order.
                let mut seen = Vec::new();
                while seen.len() < 2 {
                    let event = staying.next_event().await;
                    let name = event["event"].as_str().unwrap_or("").to_owned();
                    assert!(
                        (name == "ack" && event["id"] == 7) || name == "peer_back",
                        "{uid}: {event}"
                    );
                    seen.push(name);
                }
                staying
            });
            let (mut moved, replayed) = moved;
            let mut staying = staying;
            // `s2` arrives once: in the replay, or live right after.
            let s2 = json!(format!("s2-{uid}"));
            let in_replay = replayed
                .iter()
                .filter(|event| event["event"] == "message" && event["data"] == s2)
                .count();
            assert!(in_replay <= 1, "{uid}: replayed twice: {replayed:?}");
            if in_replay == 0 {
                assert_eq!(moved.expect("message").await, s2, "{uid}");
            }
            assert!(
                replayed.iter().all(|event| event["event"] == "message"),
                "{uid}: only the missed message is replayed: {replayed:?}"
            );
            // And the pair goes on.
            moved
                .send("message", Some(json!(format!("m3-{uid}"))), Some(8))
                .await;
            moved.expect_ack(8).await;
            assert_eq!(staying.expect("message").await, json!(format!("m3-{uid}")));
            moved.expect_silence().await;
            staying.expect_silence().await;
            (moved, staying)
        }
    }))
    .await;
    stopped.await.expect("the drained node's task");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "the drain took {took:?}");
    assert_eq!(survivor.census().registry.bound_sessions, 400);
    for (moved, staying) in results {
        moved.close().await;
        let mut staying = staying;
        staying.expect("byebye").await;
        staying.close().await;
    }
    survivor.assert_empty().await;
    drop(redis);
}

/// Seed Socket.IO clients cannot resume: they see the old shutdown
/// (`SHUTTING_DOWN`, and `byebye` for their peers); `POST
/// /admin/v1/drain` starts the drain like SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_clients_see_the_old_shutdown_and_the_admin_api_drains() {
    let cluster = TestCluster::start_with(2, admin_config()).await;
    let mut seed = signalgate_client::Client::connect_with(
        Door::SocketIo,
        cluster.nodes[0].address,
        &signalgate_client::ConnectOptions {
            seed_wire: true,
            ..Default::default()
        },
    )
    .await
    .expect("seed client");
    let welcome = seed.recv().await.expect("welcome");
    assert!(
        matches!(welcome, Incoming::Event(ref e) if e["event"] == "welcome"),
        "{welcome:?}"
    );
    seed.send(&signalgate_client::envelope(
        "register",
        Some(json!({"uid": "seedy", "type": 0})),
        None,
    ))
    .await
    .expect("register");
    let mut app = cluster.nodes[1].connect(Door::Ws).await;
    app.register("seedy", "app").await;
    app.expect("syncfrom").await;
    let (status, answer) = admin(cluster.nodes[0].address, "POST", "/admin/v1/drain", None).await;
    assert_eq!(
        (status, &answer),
        (202, &json!({"draining": true, "hand_over": true}))
    );
    app.expect("byebye").await;
    let mut events = Vec::new();
    while let Ok(Ok(Incoming::Event(event))) =
        tokio::time::timeout(common::EVENT_TIMEOUT, seed.recv()).await
    {
        events.push(event);
    }
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "error" && e["data"]["code"] == "SHUTTING_DOWN"),
        "{events:?}"
    );
    assert!(
        events.iter().all(|e| e["event"] != "reconnect"),
        "{events:?}"
    );
    app.close().await;
}

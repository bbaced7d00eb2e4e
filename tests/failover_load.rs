//! A Redis Cluster primary killed under load (issue 32, item 3), on the
//! timeline an outside probe used: two gateways on a six-node Redis Cluster
//! (three primaries, three replicas, `cluster-node-timeout` 2 s, every
//! replica in sync before the kill); every 0.5 s for 20 s a batch of 10
//! pairs registers across the two nodes and relays one message. A primary
//! is killed 2 s in. Every request must be answered (acknowledged, or
//! refused `UNAVAILABLE`) within 3 s; no registered pair may miss its
//! `syncfrom`; nothing acknowledged may be lost.
//!
//! And (item 4) one failing shard refuses only the requests whose keys it
//! serves: pairs whose keys live on the healthy shards keep registering
//! and relaying through the whole failover, never refused.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::redis_cluster::RedisCluster;
use common::{TestGateway, test_config};
use serde_json::{Value, json};
use signalgate_client::{Client, ConnectOptions, Door, Incoming, envelope};

/// Every request's answer must come within this.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);
const BATCHES: usize = 40;
const PAIRS_PER_BATCH: usize = 10;
const DOORS: [Door; 3] = [Door::Ws, Door::Grpc, Door::SocketIo];

/// What happened to one pair.
#[derive(Debug, Default)]
struct Outcome {
    /// Requests with no answer within [`ANSWER_WITHIN`], by name.
    unanswered: Vec<String>,
    /// Requests refused `UNAVAILABLE`.
    refused: usize,
    /// Both registered, but the app saw no `syncfrom` in time.
    no_syncfrom: bool,
    /// The message was acknowledged but never arrived.
    lost: bool,
    /// The message arrived.
    delivered: bool,
}

/// The next event within [`ANSWER_WITHIN`], skipping nothing.
async fn next(client: &mut Client) -> Option<Value> {
    match tokio::time::timeout(ANSWER_WITHIN, client.recv()).await {
        Ok(Ok(Incoming::Event(event))) => Some(event),
        _ => None,
    }
}

/// Waits for the answer to request `id` (events before it are kept in
/// `seen`): `Some(true)` acknowledged or answered with `answer_name`,
/// `Some(false)` refused, `None` no answer in time.
async fn answer(
    client: &mut Client,
    id: u64,
    seen: &mut Vec<Value>,
) -> Option<Result<Value, String>> {
    let deadline = tokio::time::Instant::now() + ANSWER_WITHIN;
    loop {
        let event = tokio::time::timeout_at(deadline, client.recv())
            .await
            .ok()?
            .ok()?;
        let Incoming::Event(event) = event else {
            return None;
        };
        if event["id"] == id {
            return Some(match event["event"].as_str() {
                Some("error") => Err(event["data"]["code"].as_str().unwrap_or("").to_owned()),
                _ => Ok(event),
            });
        }
        seen.push(event);
    }
}

/// Sends `register` (request id 1) for `uid` as `role_type` (0 web, 1 app).
async fn send_register(client: &mut Client, uid: &str, role_type: u8) {
    let register = json!({"uid": uid, "type": role_type});
    let _ = client
        .send(&envelope("register", Some(register), Some(1)))
        .await;
}

async fn connect(door: Door, address: SocketAddr) -> Option<Client> {
    let mut client = Client::connect_with(door, address, &ConnectOptions::default())
        .await
        .ok()?;
    let welcome = next(&mut client).await?;
    (welcome["event"] == "welcome").then_some(client)
}

/// One pair's life: both register at once (web on the first node, app on
/// the second), the web relays one message.
async fn pair(nodes: [SocketAddr; 2], uid: String, n: usize) -> Outcome {
    let mut outcome = Outcome::default();
    let (Some(mut web), Some(mut app)) = (
        connect(DOORS[n % 3], nodes[0]).await,
        connect(DOORS[(n / 3) % 3], nodes[1]).await,
    ) else {
        outcome.unanswered.push("connect".into());
        return outcome;
    };
    send_register(&mut web, &uid, 0).await;
    send_register(&mut app, &uid, 1).await;
    let mut web_seen = Vec::new();
    let mut app_seen = Vec::new();
    let (web_answer, app_answer) = tokio::join!(
        answer(&mut web, 1, &mut web_seen),
        answer(&mut app, 1, &mut app_seen)
    );
    let mut registered = 0;
    for (name, reply) in [("web register", web_answer), ("app register", app_answer)] {
        match reply {
            None => outcome.unanswered.push(name.into()),
            Some(Ok(_)) => registered += 1,
            Some(Err(code)) => {
                assert_eq!(code, "UNAVAILABLE", "{uid} {name}");
                outcome.refused += 1;
            }
        }
    }
    if registered == 2 {
        // `syncfrom` may come with (or right after) the app's `registered`.
        let mut synced = app_seen.iter().any(|event| event["event"] == "syncfrom");
        while !synced {
            match next(&mut app).await {
                Some(event) if event["event"] == "syncfrom" => synced = true,
                Some(_) => {}
                None => break,
            }
        }
        outcome.no_syncfrom = !synced;
        let _ = web
            .send(&envelope("message", Some(json!(uid)), Some(2)))
            .await;
        match answer(&mut web, 2, &mut web_seen).await {
            None => outcome.unanswered.push("message".into()),
            Some(Err(code)) => {
                assert_eq!(code, "UNAVAILABLE", "{uid} message");
                outcome.refused += 1;
            }
            Some(Ok(_)) => loop {
                match next(&mut app).await {
                    Some(event) if event["event"] == "message" => {
                        outcome.delivered = true;
                        break;
                    }
                    Some(_) => {}
                    None => {
                        outcome.lost = true;
                        break;
                    }
                }
            },
        }
    }
    web.close().await;
    app.close().await;
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_under_load_leaves_no_request_unanswered() {
    let mut redis = RedisCluster::start_with_node_timeout(2000).await;
    let config = signalgate::Config {
        redis_cluster_nodes: redis.urls(),
        node_ttl: Duration::from_secs(6),
        ..test_config()
    };
    let gateways = [
        TestGateway::start_with(config.clone()).await,
        TestGateway::start_with(config).await,
    ];
    let nodes = [gateways[0].address, gateways[1].address];
    let victim = redis.primary_of("signalgate:uid:load-0-0").await;
    let started = Instant::now();
    let load = async {
        let mut batches = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        for batch in 0..BATCHES {
            tick.tick().await;
            let at = started.elapsed();
            let handles: Vec<_> = (0..PAIRS_PER_BATCH)
                .map(|n| tokio::spawn(pair(nodes, format!("load-{batch}-{n}"), n + batch)))
                .collect();
            batches.push((batch, at, handles));
        }
        let mut results = Vec::new();
        for (batch, at, handles) in batches {
            for handle in handles {
                results.push((batch, at, handle.await.expect("a pair's task")));
            }
        }
        results
    };
    let fault = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let killed = started.elapsed();
        redis.kill_and_fail_over(victim).await;
        (killed, started.elapsed())
    };
    let (results, (killed, promoted)) = tokio::join!(load, fault);
    let mut unanswered = Vec::new();
    let (mut refused, mut delivered) = (0, 0);
    for (batch, at, outcome) in &results {
        refused += outcome.refused;
        delivered += usize::from(outcome.delivered);
        if !outcome.unanswered.is_empty() || outcome.no_syncfrom || outcome.lost {
            unanswered.push(format!("batch {batch} at {at:?}: {outcome:?}"));
        }
    }
    println!(
        "primary killed at {killed:?}, replica promoted at {promoted:?}; {} pairs: {delivered} relayed, {refused} requests refused UNAVAILABLE, {} failed",
        results.len(),
        unanswered.len()
    );
    assert!(unanswered.is_empty(), "{unanswered:#?}");
    assert!(
        delivered > results.len() / 2,
        "too few pairs relayed: {delivered}"
    );
}

/// The primary that serves none of the keys the two gateways need for
/// every pair (their channels and session indexes), if there is one.
async fn shard_without_node_keys(redis: &RedisCluster, gateways: &[TestGateway]) -> Option<u16> {
    let mut used = Vec::new();
    for gateway in gateways {
        let node = gateway.hub.node_name().to_owned();
        for key in [
            format!("signalgate:node:{node}"),
            format!("signalgate:node:{node}:sessions"),
        ] {
            used.push(redis.primary_of(&key).await);
        }
    }
    redis
        .primary_ports()
        .await
        .into_iter()
        .find(|port| !used.contains(port))
}

/// A uid (with `prefix`) whose key does not live on `victim`.
async fn uid_off(redis: &RedisCluster, victim: u16, prefix: &str, from: &mut usize) -> String {
    loop {
        *from += 1;
        let uid = format!("{prefix}-{from}");
        if redis.primary_of(&format!("signalgate:uid:{uid}")).await != victim {
            return uid;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_on_healthy_shards_never_notice_another_shard_failing() {
    let mut redis = RedisCluster::start_with_node_timeout(2000).await;
    let config = signalgate::Config {
        redis_cluster_nodes: redis.urls(),
        node_ttl: Duration::from_secs(6),
        ..test_config()
    };
    // Node names are random: start gateways until one primary serves none
    // of their per-node keys (more often than not the first pair does).
    let mut found = None;
    for _ in 0..12 {
        let gateways = [
            TestGateway::start_with(config.clone()).await,
            TestGateway::start_with(config.clone()).await,
        ];
        if let Some(victim) = shard_without_node_keys(&redis, &gateways).await {
            found = Some((gateways, victim));
            break;
        }
        for gateway in gateways {
            gateway.stop().await;
        }
    }
    let (gateways, victim) = found.expect("a layout with a shard free of per-node keys");
    let nodes = [gateways[0].address, gateways[1].address];
    let mut next_uid = 0;
    let mut standing = Vec::new();
    for n in 0..6 {
        let uid = uid_off(&redis, victim, "healthy", &mut next_uid).await;
        let outcome_pair = open_pair(nodes, &uid, n).await;
        standing.push(outcome_pair);
    }
    // The new pairs' uids, chosen before the fault (the fixture is busy
    // failing over meanwhile).
    let mut late_uids = Vec::new();
    for _ in 0..40 {
        late_uids.push(uid_off(&redis, victim, "late", &mut next_uid).await);
    }
    let mut late_uids = late_uids.into_iter();
    let started = Instant::now();
    let fault = redis.kill_and_fail_over(victim);
    let load = async {
        let mut refused = Vec::new();
        let mut new_pairs = 0;
        let mut id = 10;
        while started.elapsed() < Duration::from_secs(8) {
            id += 1;
            for (n, (uid, web, app)) in standing.iter_mut().enumerate() {
                let mut seen = Vec::new();
                let _ = web
                    .send(&envelope("message", Some(json!(id)), Some(id)))
                    .await;
                match answer(web, id, &mut seen).await {
                    Some(Ok(_)) => {
                        let arrived = loop {
                            match next(app).await {
                                Some(event) if event["event"] == "message" => break Some(event),
                                Some(_) => {}
                                None => break None,
                            }
                        };
                        assert_eq!(
                            arrived.map(|event| event["data"].clone()),
                            Some(json!(id)),
                            "{uid}"
                        );
                    }
                    other => refused.push(format!(
                        "{:?} pair {n} ({uid}) relay: {other:?}",
                        started.elapsed()
                    )),
                }
            }
            let uid = late_uids.next().expect("enough uids");
            let outcome = pair(nodes, uid.clone(), new_pairs).await;
            new_pairs += 1;
            if outcome.refused > 0
                || !outcome.unanswered.is_empty()
                || outcome.no_syncfrom
                || !outcome.delivered
            {
                refused.push(format!(
                    "{:?} new pair {uid}: {outcome:?}",
                    started.elapsed()
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        (refused, new_pairs)
    };
    let ((), (refused, new_pairs)) = tokio::join!(fault, load);
    println!(
        "{} standing pairs and {new_pairs} new ones on healthy shards through the failover; {} refused",
        standing.len(),
        refused.len()
    );
    assert!(refused.is_empty(), "{refused:#?}");
    for (_, web, app) in standing {
        web.close().await;
        app.close().await;
    }
}

/// A pair registered across the two nodes, `syncfrom` seen.
async fn open_pair(nodes: [SocketAddr; 2], uid: &str, n: usize) -> (String, Client, Client) {
    let mut web = connect(DOORS[n % 3], nodes[0]).await.expect("web connects");
    let mut app = connect(DOORS[(n / 3) % 3], nodes[1])
        .await
        .expect("app connects");
    let mut seen = Vec::new();
    send_register(&mut web, uid, 0).await;
    assert!(
        matches!(answer(&mut web, 1, &mut seen).await, Some(Ok(_))),
        "{uid}: web registers"
    );
    send_register(&mut app, uid, 1).await;
    seen.clear();
    assert!(
        matches!(answer(&mut app, 1, &mut seen).await, Some(Ok(_))),
        "{uid}: app registers"
    );
    // `syncfrom` may come before the `ack` that answers the request.
    while !seen.iter().any(|event| event["event"] == "syncfrom") {
        match next(&mut app).await {
            Some(event) => seen.push(event),
            None => panic!("{uid}: no syncfrom"),
        }
    }
    (uid.to_owned(), web, app)
}

//! Session lifecycle beyond the happy path: slow consumers and shutdown.

mod common;

use std::time::Duration;

use common::{TestGateway, paired, test_config};
use serde_json::json;
use signalgate::Config;
use signalgate_client::{Closed, Door, Incoming};

/// Which bound of the outbox a slow consumer reaches.
#[derive(Clone, Copy)]
enum Bound {
    /// A few events.
    Events,
    /// A few large events' bytes, with room for 100,000 events.
    Bytes,
}

/// A reader that never reads is closed as a slow consumer; its peer is told
/// about every event that could not be queued, then gets `byebye`.
async fn slow_consumer(slow_door: Door, bound: Bound) {
    let config = match bound {
        Bound::Events => Config {
            outbox_capacity: 8,
            ..test_config()
        },
        Bound::Bytes => Config {
            outbox_capacity: 100_000,
            outbox_max_bytes: 256 * 1024,
            ..test_config()
        },
    };
    let gateway = TestGateway::start_with(config).await;
    let (mut web, app) = paired(&gateway, "flood", Door::Ws, slow_door).await;
    let chunk = "z".repeat(60 * 1024);
    let mut refused = None;
    // The app never reads: socket buffers fill, then its outbox, then the gateway gives up.
    for id in 1..=2000u64 {
        web.send("message", Some(json!(chunk)), Some(id)).await;
        let event = web.next_event().await;
        if event["event"] == "error" {
            assert_eq!(event["data"]["code"], "SLOW_CONSUMER", "{event}");
            assert_eq!(event["id"], id);
            refused = Some(id);
            break;
        }
        assert_eq!(event["event"], "ack", "{event}");
        assert_eq!(event["id"], id, "{event}");
    }
    assert!(refused.is_some(), "the flood was never refused");
    web.expect("byebye").await;
    web.send("message", Some(json!("after")), Some(99_999))
        .await;
    web.expect_error("NO_PEER", Some(99_999)).await;
    // The slow session is gone from the registry even though its client never read.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while gateway.census().registry.bound_sessions != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            gateway.census()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.abort();
    web.close().await;
    gateway.assert_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_ws_consumer_is_closed() {
    slow_consumer(Door::Ws, Bound::Events).await;
    slow_consumer(Door::Ws, Bound::Bytes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_grpc_consumer_is_closed() {
    slow_consumer(Door::Grpc, Bound::Events).await;
    slow_consumer(Door::Grpc, Bound::Bytes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_socketio_consumer_is_closed() {
    // Not `Bound::Bytes`: socketioxide's own buffer ahead of the socket
    // holds `--outbox-capacity` packets whatever they weigh
    // (docs/SECURITY.md).
    slow_consumer(Door::SocketIo, Bound::Events).await;
}

/// A gRPC client that stops reading is replaced. `REPLACED` writes what was
/// queued before it, but a stream that cannot write (its HTTP/2 window is
/// used up) has two seconds (the door's close timeout): then the events
/// still queued for it are dropped. Reading again, the client gets fewer
/// messages than were accepted for it, then its last `error` and `ABORTED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_grpc_stream_drops_its_queue_after_the_close_timeout() {
    let gateway = TestGateway::start().await;
    let (mut web, mut app) = paired(&gateway, "stall", Door::Ws, Door::Grpc).await;
    // Far more than the client's HTTP/2 window, far less than the outbox.
    let chunk = "z".repeat(60 * 1024);
    let accepted = 40u64;
    for id in 1..=accepted {
        web.send("message", Some(json!(chunk)), Some(id)).await;
        web.expect_ack(id).await;
    }
    let mut newer = gateway.connect(Door::Grpc).await;
    newer.register("stall", "app").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut messages = 0u64;
    let last_event = loop {
        match app.next().await {
            Incoming::Event(event) if event["event"] == "message" => messages += 1,
            Incoming::Event(event) => break event,
            Incoming::Closed(closed) => panic!("closed before the last error: {closed:?}"),
        }
    };
    assert_eq!(last_event["event"], "error", "{last_event}");
    assert_eq!(last_event["data"]["code"], "REPLACED", "{last_event}");
    assert!(
        messages < accepted,
        "{messages} of {accepted} accepted messages arrived: nothing queued was dropped"
    );
    match app.next().await {
        Incoming::Closed(Closed::Grpc(code, _)) => assert_eq!(code, tonic::Code::Aborted),
        other => panic!("expected the stream's status, got {other:?}"),
    }
    newer.close().await;
    web.close().await;
    gateway.assert_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_session_with_shutting_down() {
    let gateway = TestGateway::start().await;
    let (mut web_a, mut app_a) = paired(&gateway, "s1", Door::Ws, Door::Grpc).await;
    let (mut web_b, mut app_b) = paired(&gateway, "s2", Door::Grpc, Door::Ws).await;
    let (mut web_c, mut app_c) = paired(&gateway, "s3", Door::SocketIo, Door::SocketIo).await;
    let mut idle = gateway.connect(Door::Ws).await;
    let hub = gateway.hub.clone();
    let stopping = tokio::spawn(gateway.stop());
    for client in [
        &mut web_a, &mut app_a, &mut web_b, &mut app_b, &mut web_c, &mut app_c, &mut idle,
    ] {
        let error = client.next_event().await;
        assert_eq!(error["event"], "error", "{error}");
        assert_eq!(error["data"]["code"], "SHUTTING_DOWN", "{error}");
        match client.next().await {
            Incoming::Closed(Closed::WebSocket(Some((code, _)))) => assert_eq!(code, 1001),
            Incoming::Closed(Closed::Grpc(code, _)) => assert_eq!(code, tonic::Code::Unavailable),
            Incoming::Closed(Closed::SocketIo(how)) => assert_eq!(how, "server disconnect"),
            other => panic!("{other:?}"),
        }
    }
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown within the grace period")
        .expect("stop task");
    assert!(hub.census().is_empty(), "{:?}", hub.census());
}

/// One Socket.IO client that behaves as socket.io-client does: it emits
/// the moment the namespace's CONNECT packet arrives, before `welcome`.
/// Returns the answer to that first emit's acknowledgement callback.
async fn first_emit_after_connect(gateway: &TestGateway) -> serde_json::Value {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket",
        gateway.address
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    match socket.next().await {
        Some(Ok(Message::Text(text))) if text.starts_with('0') => {}
        other => panic!("expected the Engine.IO open packet, got {other:?}"),
    }
    socket.send(Message::text("40")).await.expect("send");
    loop {
        let Some(Ok(Message::Text(text))) = socket.next().await else {
            panic!("the connection ended before CONNECT");
        };
        if text.starts_with("40") {
            break;
        }
    }
    socket
        .send(Message::text(r#"420["message",{"early":true}]"#))
        .await
        .expect("send");
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let Some(Ok(Message::Text(text))) = socket.next().await else {
                panic!("the connection ended before the acknowledgement");
            };
            if let Some(arguments) = text.strip_prefix("430") {
                return serde_json::from_str::<serde_json::Value>(arguments).expect("JSON");
            }
        }
    })
    .await
    .expect("the first emit after CONNECT was never acknowledged");
    let _ = socket.close(None).await;
    answer
}

/// socketioxide answers a namespace CONNECT before it runs the gateway's
/// (spawned) connect handler: an event the client sends at once must not be
/// dropped for want of a handler. Many clients at a time, so that the
/// handlers wait in the run queue while the first events arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_events_sent_right_after_connect_are_handled() {
    let gateway = TestGateway::start().await;
    // Before the fix about two runs in five failed with 5 rounds.
    for _ in 0..20 {
        let answers =
            futures_util::future::join_all((0..64).map(|_| first_emit_after_connect(&gateway)))
                .await;
        for answer in answers {
            assert_eq!(answer[0]["error"]["code"], "NOT_REGISTERED", "{answer}");
        }
    }
    gateway.assert_empty().await;
}

/// A client flooding past the rate limit is closed; what it may reconcile
/// from (docs/PROTOCOL.md, "How sessions end"): the requests answered are
/// exactly the first ones it sent, each once and in order, the last being
/// the `RATE_LIMITED` that closed it; every later one is unanswered and was
/// not applied; the peer received exactly the acknowledged messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_close_answers_a_prefix_of_the_requests() {
    let gateway = TestGateway::start_with(Config {
        rate_limit: 20.0,
        rate_burst: 10.0,
        ..test_config()
    })
    .await;
    for door in Door::ALL {
        let (mut peer, mut flooder) = paired(&gateway, "reconcile", Door::Ws, door).await;
        for id in 1..=60u64 {
            let request = signalgate_client::envelope("message", Some(json!(id)), Some(id));
            if flooder.client.send(&request).await.is_err() {
                break;
            }
        }
        let mut answered = Vec::new();
        let mut acked = Vec::new();
        loop {
            match flooder.next().await {
                Incoming::Event(event) if event["event"] == "ack" => {
                    let id = event["id"].as_u64().expect("id");
                    answered.push(id);
                    acked.push(id);
                }
                Incoming::Event(event) if event["event"] == "error" => {
                    assert_eq!(event["data"]["code"], "RATE_LIMITED", "{door}: {event}");
                    // The farewell before the close carries no id.
                    if let Some(id) = event.get("id").and_then(|id| id.as_u64()) {
                        answered.push(id);
                    }
                }
                Incoming::Event(other) => panic!("{door}: {other}"),
                Incoming::Closed(_) => break,
            }
        }
        let prefix: Vec<u64> = (1..=answered.len() as u64).collect();
        assert_eq!(answered, prefix, "{door}: answers are a prefix, in order");
        assert!(answered.len() < 60, "{door}: the flood was never closed");
        let mut delivered = Vec::new();
        loop {
            let event = peer.next_event().await;
            match event["event"].as_str() {
                Some("message") => delivered.push(event["data"].as_u64().expect("n")),
                Some("byebye") => break,
                _ => panic!("{door}: {event}"),
            }
        }
        assert_eq!(
            delivered, acked,
            "{door}: exactly the acknowledged took effect"
        );
        peer.close().await;
    }
    gateway.assert_empty().await;
}

/// Both ends of a pair closing cleanly at the same moment: the `byebye`
/// written to the second one races its own close. Each close is a clean
/// end, never taken for a dropped connection (which would hold the session
/// away for the resume window). Many pairs, on every door.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_closing_together_leave_nothing_away() {
    let gateway = TestGateway::start().await;
    let doors = [Door::Ws, Door::Grpc, Door::SocketIo];
    for round in 0..4 {
        let mut pairs = Vec::new();
        for n in 0..24 {
            let uid = format!("together-{round}-{n}");
            pairs.push(paired(&gateway, &uid, doors[n % 3], doors[(n / 3) % 3]).await);
        }
        futures_util::future::join_all(
            pairs
                .into_iter()
                .flat_map(|(web, app)| [web.close(), app.close()]),
        )
        .await;
        let census = gateway.census();
        assert_eq!(census.away_sessions, 0, "{census:?}");
        gateway.assert_empty().await;
    }
}

//! Call outcomes (docs/PROTOCOL.md, *Call outcomes*): `callreport` on every
//! pair of doors, on one node and split over two nodes (the app's report is
//! joined on the web session's node), read back through the admin API;
//! reports that break the rules on every door; one side alone.

mod common;

use std::time::Duration;

use common::admin::{ADMIN_TOKEN, admin, admin_config, admin_grpc};
use common::cluster::Topology;
use common::{EVENT_TIMEOUT, TestGateway, paired};
use serde_json::{Value, json};
use signalgate::proto::admin as pb;
use signalgate_client::Door;

include!("common/across_doors.rs");

across_doors!(reports_of_both_sides_join_into_one_call);

/// `GET /admin/v1/calls` on `address` until `done` holds (the app's report
/// may still be on its way to the web session's node), within the event
/// timeout.
async fn calls_until(address: std::net::SocketAddr, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let (status, calls) = admin(address, "GET", "/admin/v1/calls?window=1h", None).await;
        assert_eq!(status, 200, "{calls}");
        if done(&calls) {
            return calls;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the calls never showed: {calls}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Both sides report: acknowledged, never relayed, joined into one record
/// per call (connected on the relay; then a failure), which every node's
/// admin API shows merged.
async fn reports_of_both_sides_join_into_one_call(
    topology: Topology,
    web_door: Door,
    app_door: Door,
) {
    let gateway = topology.start_with(admin_config()).await;
    let nodes = gateway.addresses();
    let (mut web, mut app) = paired(&gateway, "callee", web_door, app_door).await;

    web.send(
        "callreport",
        Some(json!({"call": "c-1", "result": "connected", "path": "host", "setupMs": 800})),
        Some(1),
    )
    .await;
    web.expect_ack(1).await;
    app.send(
        "callreport",
        Some(json!({"call": "c-1", "result": "connected", "path": "relay", "setupMs": 1200})),
        Some(2),
    )
    .await;
    app.expect_ack(2).await;
    let pair = format!("{}/{}", web_door.as_str(), app_door.as_str());
    for address in &nodes {
        let calls = calls_until(*address, |calls| calls["total"] == 1).await;
        assert_eq!(calls["connected"], 1, "{calls}");
        assert_eq!(calls["failed"], 0, "{calls}");
        assert_eq!(calls["relayShare"], 1.0, "either side's relay: {calls}");
        assert_eq!(
            calls["setupMs"],
            json!({"p50": 1200, "p95": 1200}),
            "{calls}"
        );
        assert_eq!(
            calls["byDoorPair"],
            json!({pair.clone(): {"total": 1, "connected": 1, "failed": 0}}),
            "{calls}"
        );
        assert_eq!(calls["windowS"], 3600);
    }

    // A failure: either side's `failed` fails the call; its reason is listed.
    app.send(
        "callreport",
        Some(json!({"call": "c-2", "result": "failed", "setupMs": 15000, "reason": "ICE failed"})),
        None,
    )
    .await;
    web.send(
        "callreport",
        Some(json!({"call": "c-2", "result": "connected", "path": "srflx", "setupMs": 900})),
        Some(3),
    )
    .await;
    web.expect_ack(3).await;
    // The call's end: acknowledged, not counted as another call.
    web.send(
        "callreport",
        Some(json!({"call": "c-1", "result": "closed", "durationMs": 61000})),
        Some(4),
    )
    .await;
    web.expect_ack(4).await;
    let calls = calls_until(nodes[0], |calls| calls["total"] == 2).await;
    assert_eq!(
        (calls["connected"].clone(), calls["failed"].clone()),
        (json!(1), json!(1))
    );
    let failures = calls["recentFailures"].as_array().expect("a list");
    assert_eq!(failures.len(), 1, "{calls}");
    assert_eq!(failures[0]["uid"], "callee");
    assert_eq!(failures[0]["call"], "c-2");
    assert_eq!(failures[0]["reason"], "ICE failed");
    assert!(
        failures[0]["at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z'))
    );
    // gRPC's GetCalls says the same as the HTTP answer.
    let mut grpc = admin_grpc(nodes[0], Some(ADMIN_TOKEN)).await;
    let answer = grpc
        .get_calls(pb::GetCallsRequest {
            window: "1h".into(),
        })
        .await
        .expect("calls")
        .into_inner();
    assert_eq!(
        (
            answer.total,
            answer.connected,
            answer.failed,
            answer.window_s
        ),
        (2, 1, 1, 3600)
    );
    assert_eq!(
        answer.relay_share,
        calls["relayShare"].as_f64().expect("share")
    );
    assert_eq!(answer.setup_ms_p50, calls["setupMs"]["p50"].as_u64());
    assert_eq!(answer.recent_failures.len(), 1);
    assert_eq!(answer.recent_failures[0].reason, "ICE failed");
    assert_eq!(
        answer.recent_failures[0].at,
        failures[0]["at"].as_str().expect("at")
    );
    let refused = grpc
        .get_calls(pb::GetCallsRequest {
            window: "forever".into(),
        })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    // Nothing reached either client.
    web.expect_silence().await;
    app.expect_silence().await;
    web.close().await;
    app.expect("byebye").await;
    app.close().await;
    gateway.assert_empty().await;
}

/// Reports that break the rules, on every door: `BAD_REQUEST` naming the
/// field, with the request's id; before `register`, `NOT_REGISTERED`. The
/// session keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reports_are_refused_naming_the_field() {
    let gateway = TestGateway::start_with(admin_config()).await;
    let long_reason = "r".repeat(201);
    let cases = [
        (json!({"result": "failed"}), "call"),
        (json!({"call": "", "result": "failed"}), "call"),
        (json!({"call": "x".repeat(65), "result": "failed"}), "call"),
        (json!({"call": "c", "result": "ringing"}), "result"),
        (json!({"call": "c", "result": "connected"}), "path"),
        (
            json!({"call": "c", "result": "connected", "path": "turn"}),
            "path",
        ),
        (
            json!({"call": "c", "result": "connected", "path": "host", "setupMs": -5}),
            "setupMs",
        ),
        (
            json!({"call": "c", "result": "closed", "durationMs": -1}),
            "durationMs",
        ),
        (
            json!({"call": "c", "result": "failed", "durationMs": 5}),
            "durationMs",
        ),
        (
            json!({"call": "c", "result": "closed", "reason": "hung up"}),
            "reason",
        ),
        (
            json!({"call": "c", "result": "failed", "reason": long_reason}),
            "reason",
        ),
    ];
    for door in [Door::Ws, Door::Grpc, Door::SocketIo] {
        let mut client = gateway.connect(door).await;
        client
            .send(
                "callreport",
                Some(json!({"call": "c", "result": "failed"})),
                Some(1),
            )
            .await;
        client.expect_error("NOT_REGISTERED", Some(1)).await;
        client.register(&format!("bad-{door}"), "web").await;
        for (n, (data, field)) in (10u64..).zip(cases.iter()) {
            client.send("callreport", Some(data.clone()), Some(n)).await;
            let error = client.expect_error("BAD_REQUEST", Some(n)).await;
            let message = error["data"]["message"].as_str().unwrap_or_default();
            assert!(message.starts_with(field), "{door} {data}: {message}");
        }
        // JSON doors also refuse fields of the wrong type.
        if door != Door::Grpc {
            client
                .send(
                    "callreport",
                    Some(json!({"call": 7, "result": "failed"})),
                    Some(30),
                )
                .await;
            let error = client.expect_error("BAD_REQUEST", Some(30)).await;
            assert_eq!(error["data"]["message"], "call must be a string", "{door}");
            client
                .send(
                    "callreport",
                    Some(
                        json!({"call": "c", "result": "connected", "path": "host", "setupMs": 1.5}),
                    ),
                    Some(31),
                )
                .await;
            client.expect_error("BAD_REQUEST", Some(31)).await;
        }
        client.send("iceservers", None, Some(40)).await;
        client.expect("iceservers").await;
        client.expect_ack(40).await;
        client.close().await;
    }
    let (_, calls) = admin(gateway.address, "GET", "/admin/v1/calls", None).await;
    assert_eq!(
        calls["total"], 0,
        "refused reports count for nothing: {calls}"
    );
    gateway.assert_empty().await;
}

/// One side alone is recorded after the join window, marked by the door
/// pair's missing side; the window comes from `--call-join-window`; a
/// window the admin API cannot take is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_side_alone_is_recorded_after_the_join_window() {
    let gateway = TestGateway::start_with(signalgate::Config {
        call_join_window: Duration::from_millis(300),
        ..admin_config()
    })
    .await;
    let (web, mut app) = paired(&gateway, "lonely", Door::Ws, Door::Grpc).await;
    app.send(
        "callreport",
        Some(json!({"call": "c-9", "result": "connected", "path": "prflx", "setupMs": 450})),
        Some(1),
    )
    .await;
    app.expect_ack(1).await;
    let calls = calls_until(gateway.address, |calls| calls["total"] == 1).await;
    assert_eq!(
        calls["byDoorPair"],
        json!({"none/grpc": {"total": 1, "connected": 1, "failed": 0}}),
        "{calls}"
    );
    assert_eq!(calls["relayShare"], 0.0);
    for window in ["0s", "2d", "soon"] {
        let (status, answer) = admin(
            gateway.address,
            "GET",
            &format!("/admin/v1/calls?window={window}"),
            None,
        )
        .await;
        assert_eq!(
            (status, answer["code"].clone()),
            (400, json!("BAD_REQUEST")),
            "{window}"
        );
    }
    web.close().await;
    app.expect("byebye").await;
    app.close().await;
    gateway.assert_empty().await;
}

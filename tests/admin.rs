//! The admin API (docs/OPERATIONS.md, *Admin API*) on its HTTP JSON and
//! gRPC surfaces, against real gateways: on one node and split over two
//! nodes sharing Redis, on every pair of doors.

mod common;

use std::time::Duration;

use common::admin::{ADMIN_TOKEN, admin, admin_config, admin_grpc, http};
use common::cluster::{TestCluster, Topology};
use common::{EVENT_TIMEOUT, TestGateway, paired};
use serde_json::{Value, json};
use signalgate::proto::admin as pb;
use signalgate_client::{Closed, Door};

include!("common/across_doors.rs");

across_doors!(presence_push_and_kick);

/// Presence, push (online and away), listing and kick, asked of the first
/// node (with two nodes the app session lives on the second).
async fn presence_push_and_kick(topology: Topology, web_door: Door, app_door: Door) {
    let gateway = topology.start_with(admin_config()).await;
    let nodes = gateway.addresses();
    let asked = nodes[0];
    let (mut web, mut app) = paired(&gateway, "zed", web_door, app_door).await;

    let (status, presence) = admin(asked, "GET", "/admin/v1/presence/zed", None).await;
    assert_eq!(status, 200, "{presence}");
    assert_eq!(presence["uid"], "zed");
    assert_eq!(presence["paired"], true);
    for (role, door) in [("web", web_door), ("app", app_door)] {
        let held = &presence[role];
        assert_eq!(held["state"], "online", "{presence}");
        assert_eq!(held["door"], door.as_str(), "{presence}");
        assert!(held["session"].as_str().is_some_and(|s| !s.is_empty()));
        let since = held["since"].as_str().expect("since");
        assert!(
            since.ends_with('Z') && since.contains('.'),
            "RFC 3339 with ms: {since}"
        );
    }
    if nodes.len() == 2 {
        assert_ne!(
            presence["web"]["node"], presence["app"]["node"],
            "{presence}"
        );
    }

    // Push to a connected session: a sequenced `notice` with the data.
    let data = json!({"call": "incoming", "from": "Zoë", "n": [1, 2.5, null]});
    let (status, answer) = admin(
        asked,
        "POST",
        "/admin/v1/push",
        Some(json!({"uid": "zed", "role": "app", "data": data})),
    )
    .await;
    assert_eq!((status, &answer), (200, &json!({"delivered": true})));
    assert_eq!(app.expect("notice").await, data);
    let (status, _) = admin(
        asked,
        "POST",
        "/admin/v1/push",
        Some(json!({"uid": "zed", "role": "web", "data": "ring"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(web.expect("notice").await, "ring");

    let (status, page) = admin(asked, "GET", "/admin/v1/sessions?uid_prefix=ze", None).await;
    assert_eq!(status, 200, "{page}");
    let sessions = page["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 2, "{page}");
    assert_eq!(sessions[0]["role"], "app", "(uid, role) order: {page}");
    assert_eq!(sessions[1]["role"], "web");
    assert!(sessions.iter().all(|s| {
        s["remote_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:"))
    }));
    assert_eq!(page["next_cursor"], Value::Null);

    // An away session: the notice is held and replayed on resume (with two
    // nodes the app resumes on the other node).
    let token = app.resume_token();
    let last_seq = app.last_seq;
    app.abort();
    web.expect("peer_away").await;
    let (_, presence) = admin(asked, "GET", "/admin/v1/presence/zed", None).await;
    assert_eq!(presence["app"]["state"], "away", "{presence}");
    assert_eq!(presence["paired"], true);
    let (status, answer) = admin(
        asked,
        "POST",
        "/admin/v1/push",
        Some(json!({"uid": "zed", "role": "app", "data": {"held": 1}})),
    )
    .await;
    assert_eq!(
        (status, &answer),
        (200, &json!({"delivered": false, "held": true}))
    );
    let mut app = gateway.app(app_door).await;
    app.send(
        "resume",
        Some(json!({"token": token, "last_seq": last_seq})),
        Some(1),
    )
    .await;
    let resumed = app.expect("resumed").await;
    assert_eq!(resumed["replayed"], 1, "{resumed}");
    assert_eq!(app.expect("notice").await, json!({"held": 1}));
    app.expect_ack(1).await;
    web.expect("peer_back").await;

    // Kick the app: KICKED with the reason (the longest accepted, 512
    // bytes), closed, not resumable; the peer hears `byebye`.
    let token = resumed["resumeToken"].as_str().expect("token").to_owned();
    let reason = "abuse reported ".repeat(35)[..512].to_owned();
    let (status, answer) = admin(
        asked,
        "POST",
        "/admin/v1/kick",
        Some(json!({"uid": "zed", "role": "app", "reason": reason})),
    )
    .await;
    assert_eq!((status, &answer), (200, &json!({"kicked": 1})));
    let error = app.expect_error("KICKED", None).await;
    assert_eq!(error["data"]["message"], reason);
    match app.expect_closed().await {
        Closed::WebSocket(frame) => assert_eq!(frame.map(|(code, _)| code), Some(4005)),
        Closed::Grpc(code, _) => assert_eq!(code, tonic::Code::PermissionDenied),
        Closed::SocketIo(_) => {}
    }
    web.expect("byebye").await;
    let mut again = gateway.app(app_door).await;
    again
        .send(
            "resume",
            Some(json!({"token": token, "last_seq": 0})),
            Some(2),
        )
        .await;
    again.expect_error("RESUME_FAILED", Some(2)).await;
    let (_, presence) = admin(asked, "GET", "/admin/v1/presence/zed", None).await;
    assert_eq!(presence["app"]["state"], "absent", "{presence}");
    assert_eq!(presence["paired"], false);
    let (status, answer) = admin(
        asked,
        "POST",
        "/admin/v1/push",
        Some(json!({"uid": "zed", "role": "app", "data": 1})),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(answer["code"], "NO_SESSION");

    // Kick without a role takes what is left (the web).
    let (_, answer) = admin(
        asked,
        "POST",
        "/admin/v1/kick",
        Some(json!({"uid": "zed", "reason": "bye"})),
    )
    .await;
    assert_eq!(answer, json!({"kicked": 1}));
    web.expect_error("KICKED", None).await;
    web.expect_closed().await;
    again.close().await;
    gateway.assert_empty().await;
}

/// Paging with a small limit visits every session of both nodes once, in
/// (uid, role) order; stats come from both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_and_stats_cover_every_node() {
    let cluster = TestCluster::start_with(2, admin_config()).await;
    let mut clients = Vec::new();
    for n in 0..13 {
        let node = &cluster.nodes[n % 2];
        for role in ["web", "app"] {
            let door = [Door::Ws, Door::Grpc, Door::SocketIo][(n + role.len()) % 3];
            let mut client = node.connect(door).await;
            client.register(&format!("page-{n:02}"), role).await;
            clients.push(client);
        }
    }
    let mut other = cluster.nodes[1].connect(Door::Ws).await;
    other.register("elsewhere", "web").await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(cursor) => format!("/admin/v1/sessions?uid_prefix=page-&limit=4&cursor={cursor}"),
            None => "/admin/v1/sessions?uid_prefix=page-&limit=4".to_owned(),
        };
        let (status, page) = admin(cluster.nodes[0].address, "GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        for session in page["sessions"].as_array().expect("sessions") {
            seen.push(format!(
                "{}/{}",
                session["uid"].as_str().unwrap_or(""),
                session["role"].as_str().unwrap_or("")
            ));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let mut expected: Vec<String> = (0..13)
        .flat_map(|n| [format!("page-{n:02}/app"), format!("page-{n:02}/web")])
        .collect();
    expected.sort();
    assert_eq!(seen, expected, "every session once, in order");

    // Relay a little so that the rates move, then ask for stats.
    clients[1].send("message", Some(json!("hi")), None).await;
    clients[0].expect("message").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, stats) = admin(cluster.nodes[1].address, "GET", "/admin/v1/stats", None).await;
    assert_eq!(status, 200, "{stats}");
    let nodes = stats["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 2, "{stats}");
    assert!(
        nodes
            .iter()
            .all(|node| node["health"] == "up" && node["uptime_s"].is_u64())
    );
    let connected: u64 = ["ws", "grpc", "socketio"]
        .iter()
        .map(|door| stats["totals"]["sessions"][door].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(connected, 27, "{stats}");
    assert_eq!(stats["totals"]["nodes_up"], 2);
    for client in clients {
        client.close().await;
    }
    other.close().await;
    cluster.assert_empty().await;
}

/// Every gRPC call, asked of the node that does not hold the sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_surface_answers_every_call_across_nodes() {
    let cluster = TestCluster::start_with(2, admin_config()).await;
    let mut web = cluster.nodes[1].connect(Door::Grpc).await;
    web.register("gina", "web").await;
    let mut app = cluster.nodes[1].connect(Door::Ws).await;
    app.register("gina", "app").await;
    app.expect("syncfrom").await;
    let mut admin = admin_grpc(cluster.nodes[0].address, Some(ADMIN_TOKEN)).await;

    let presence = admin
        .get_presence(pb::GetPresenceRequest { uid: "gina".into() })
        .await
        .expect("presence")
        .into_inner();
    assert!(presence.paired);
    let web_presence = presence.web.expect("web");
    assert_eq!(web_presence.state, "online");
    assert_eq!(web_presence.door, "grpc");
    assert_eq!(web_presence.node, cluster.nodes[1].hub.node_name());
    assert!(web_presence.since_ms > 0);

    let page = admin
        .list_sessions(pb::ListSessionsRequest {
            uid_prefix: "gi".into(),
            limit: 1,
            cursor: String::new(),
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(page.sessions.len(), 1);
    assert_eq!(page.sessions[0].role, "app");
    let rest = admin
        .list_sessions(pb::ListSessionsRequest {
            uid_prefix: "gi".into(),
            limit: 1,
            cursor: page.next_cursor,
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(rest.sessions.len(), 1);
    assert_eq!(rest.sessions[0].role, "web");

    let data = prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue("ring".into())),
    };
    let pushed = admin
        .push(pb::PushRequest {
            uid: "gina".into(),
            role: "web".into(),
            data: Some(data),
        })
        .await
        .expect("push")
        .into_inner();
    assert!(pushed.delivered && !pushed.held);
    assert_eq!(web.expect("notice").await, "ring");
    let absent = admin
        .push(pb::PushRequest {
            uid: "nobody".into(),
            role: "web".into(),
            data: None,
        })
        .await
        .expect_err("no data");
    assert_eq!(absent.code(), tonic::Code::InvalidArgument);
    let absent = admin
        .push(pb::PushRequest {
            uid: "nobody".into(),
            role: "web".into(),
            data: Some(prost_types::Value::default()),
        })
        .await
        .expect_err("nobody");
    assert_eq!(absent.code(), tonic::Code::NotFound);

    let stats = admin
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(stats.nodes.len(), 2);
    assert_eq!(stats.totals.expect("totals").nodes_up, 2);
    let mut watch = admin
        .watch_stats(pb::WatchStatsRequest { interval_ms: 200 })
        .await
        .expect("watch")
        .into_inner();
    for _ in 0..2 {
        let stats = tokio::time::timeout(EVENT_TIMEOUT, watch.message())
            .await
            .expect("in time")
            .expect("a message")
            .expect("stats");
        assert_eq!(stats.nodes.len(), 2);
    }

    let kicked = admin
        .kick(pb::KickRequest {
            uid: "gina".into(),
            role: String::new(),
            reason: "maintenance".into(),
        })
        .await
        .expect("kick")
        .into_inner();
    assert_eq!(kicked.kicked, 2);
    for client in [&mut web, &mut app] {
        let error = client.expect_error("KICKED", None).await;
        assert_eq!(error["data"]["message"], "maintenance");
        client.expect_closed().await;
    }
    let bad = admin
        .kick(pb::KickRequest {
            uid: String::new(),
            role: String::new(),
            reason: String::new(),
        })
        .await
        .expect_err("empty uid");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    drop(watch);
    cluster.assert_empty().await;
}

/// Bad requests get `400 {"code": "BAD_REQUEST"}` and disturb nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_a_code() {
    let gateway = TestGateway::start_with(admin_config()).await;
    let address = gateway.address;
    let (mut web, mut app) = paired(&gateway, "kim", Door::Ws, Door::Grpc).await;
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("POST", "/admin/v1/kick", Some("{not json")),
        ("POST", "/admin/v1/kick", Some(r#"{"uid": 7}"#)),
        ("POST", "/admin/v1/kick", Some(r#"{"uid": ""}"#)),
        (
            "POST",
            "/admin/v1/kick",
            Some(r#"{"uid": "kim", "role": "phone"}"#),
        ),
        (
            "POST",
            "/admin/v1/kick",
            Some(r#"{"uid": "kim", "reason": 3}"#),
        ),
        (
            "POST",
            "/admin/v1/push",
            Some(r#"{"uid": "kim", "role": "web"}"#),
        ),
        (
            "POST",
            "/admin/v1/push",
            Some(r#"{"uid": "kim", "role": null, "data": 1}"#),
        ),
        ("POST", "/admin/v1/push", Some(r#"["kim"]"#)),
        ("GET", "/admin/v1/sessions?limit=0", None),
        ("GET", "/admin/v1/sessions?limit=1001", None),
        ("GET", "/admin/v1/sessions?limit=ten", None),
        ("GET", "/admin/v1/sessions?cursor=%%%", None),
        ("GET", "/admin/v1/sessions?cursor=bm90LWEtY3Vyc29y", None),
        ("GET", "/admin/v1/presence/a%0Ab", None),
    ];
    for (method, path, body) in cases {
        let answer = http(address, method, path, &auth, *body).await;
        assert_eq!(
            answer.status, 400,
            "{method} {path} {body:?}: {}",
            answer.body
        );
        let json = answer.json();
        assert_eq!(json["code"], "BAD_REQUEST", "{json}");
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // A kick reason over 512 bytes (one of 300 KB could not reach the
    // client within any door's limits).
    for length in [513, 300_000] {
        let long = json!({"uid": "kim", "reason": "r".repeat(length)}).to_string();
        let answer = http(address, "POST", "/admin/v1/kick", &auth, Some(&long)).await;
        assert_eq!(answer.status, 400, "{length}: {}", answer.body);
        assert_eq!(answer.json()["code"], "BAD_REQUEST");
        assert!(answer.body.contains("512 bytes"), "{}", answer.body);
    }
    // A payload over the message limit.
    let big = json!({"uid": "kim", "role": "web", "data": "x".repeat(70_000)}).to_string();
    let answer = http(address, "POST", "/admin/v1/push", &auth, Some(&big)).await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert_eq!(answer.json()["code"], "MESSAGE_TOO_LARGE");
    // The sessions noticed nothing.
    web.send("message", Some(json!("still here")), Some(1))
        .await;
    web.expect_ack(1).await;
    assert_eq!(app.expect("message").await, "still here");
    web.expect_silence().await;
    common::finish(gateway, web, app).await;
}

/// No token, a wrong token, the client doors' JWT, another origin: all
/// refused; with the admin token off, nothing is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_surface_admits_only_its_token() {
    let jwt_secret = "client-door-secret";
    let gateway = TestGateway::start_with(signalgate::Config {
        jwt_secret: Some(jwt_secret.into()),
        allowed_origins: vec!["https://app.example".into()],
        ..admin_config()
    })
    .await;
    let address = gateway.address;
    let client_jwt =
        signalgate::auth::mint(jwt_secret, "kim", None, Duration::from_secs(60)).expect("mint");
    let client_bearer = format!("Bearer {client_jwt}");
    let wrong = format!("Bearer {ADMIN_TOKEN}x");
    let right = format!("Bearer {ADMIN_TOKEN}");
    for headers in [
        vec![],
        vec![("Authorization", wrong.as_str())],
        vec![("Authorization", client_bearer.as_str())],
        vec![("Authorization", ADMIN_TOKEN)],
    ] {
        let answer = http(address, "GET", "/admin/v1/stats", &headers, None).await;
        assert_eq!(answer.status, 401, "{headers:?}: {}", answer.body);
        assert_eq!(answer.json()["code"], "UNAUTHENTICATED");
    }
    // A page of another origin cannot call it, even an allowed one, and no
    // CORS header invites it.
    let answer = http(
        address,
        "GET",
        "/admin/v1/stats",
        &[("Authorization", &right), ("Origin", "https://app.example")],
        None,
    )
    .await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(answer.header("access-control-allow-origin").is_none());
    let answer = http(
        address,
        "GET",
        "/admin/v1/stats",
        &[("Authorization", &right)],
        None,
    )
    .await;
    assert_eq!(answer.status, 200);
    assert!(answer.header("access-control-allow-origin").is_none());
    // gRPC: no token, a wrong one, the client JWT.
    for token in [None, Some("nope"), Some(client_jwt.as_str())] {
        let mut admin = admin_grpc(address, token).await;
        let refused = admin
            .get_stats(pb::GetStatsRequest {})
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{token:?}");
    }
    // The admin token is no client token.
    let refused = signalgate_client::Client::connect_with(
        Door::Ws,
        address,
        &signalgate_client::ConnectOptions {
            token: Some(ADMIN_TOKEN.into()),
            ..Default::default()
        },
    )
    .await;
    assert!(refused.is_err(), "the admin token opened a client session");
    gateway.stop().await;

    // Off: 404 on HTTP (the dashboard too), UNIMPLEMENTED on gRPC.
    let off = TestGateway::start().await;
    for path in ["/admin/v1/stats", "/admin/", "/admin/v1/presence/kim"] {
        let answer = http(off.address, "GET", path, &[("Authorization", &right)], None).await;
        assert_eq!(answer.status, 404, "{path}");
    }
    let mut admin = admin_grpc(off.address, Some(ADMIN_TOKEN)).await;
    let refused = admin
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect_err("off");
    assert_eq!(refused.code(), tonic::Code::Unimplemented);
    off.stop().await;
}

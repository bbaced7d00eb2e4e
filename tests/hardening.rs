//! Production hardening: authentication, rate limits, register timeout,
//! connection caps, slowloris, resets and cancels, TLS, metrics — each over
//! every door, with a bystander pair that must keep relaying throughout.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{
    TestClient, TestGateway, assert_refused, finish, http_get, paired, still_relaying, test_config,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use signalgate::Config;
use signalgate::auth::mint;
use signalgate::core::Role;
use signalgate_client::{Client, Closed, Door, GrpcClient, Incoming, WsClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "test-secret-of-the-gateway";

fn authenticated() -> Config {
    Config {
        jwt_secret: Some(SECRET.to_owned()),
        ..test_config()
    }
}

fn token(uid: &str, role: Option<Role>) -> String {
    mint(SECRET, uid, role, Duration::from_secs(600)).expect("mint")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn signed(claims: serde_json::Value, algorithm: Algorithm, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode")
}

/// A bystander pair on an authenticated gateway.
async fn bystanders(gateway: &TestGateway) -> (TestClient, TestClient) {
    let credential = token("bystander", None);
    let mut web = gateway
        .connect_with_token(Door::Ws, Some(&credential))
        .await;
    let mut app = gateway
        .connect_with_token(Door::Grpc, Some(&credential))
        .await;
    web.register("bystander", "web").await;
    app.register("bystander", "app").await;
    app.expect("syncfrom").await;
    (web, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_before_anything_enters_the_registry() {
    let gateway = TestGateway::start_with(authenticated()).await;
    let (mut web, mut app) = bystanders(&gateway).await;
    let bad = [
        None,
        Some("not.a.jwt".to_owned()),
        // Expired (beyond the leeway).
        Some(signed(
            json!({"sub": "eve", "exp": now() - 600}),
            Algorithm::HS256,
            SECRET,
        )),
        // Signed with another secret.
        Some(mint("someone-else", "eve", None, Duration::from_secs(600)).expect("mint")),
        // The wrong algorithm, even with the right secret.
        Some(signed(
            json!({"sub": "eve", "exp": now() + 600}),
            Algorithm::HS512,
            SECRET,
        )),
        // No subject.
        Some(signed(
            json!({"exp": now() + 600}),
            Algorithm::HS256,
            SECRET,
        )),
        // No expiry.
        Some(signed(json!({"sub": "eve"}), Algorithm::HS256, SECRET)),
        // Not valid before an hour from now (beyond the leeway).
        Some(signed(
            json!({"sub": "eve", "exp": now() + 7200, "nbf": now() + 3600}),
            Algorithm::HS256,
            SECRET,
        )),
    ];
    for door in Door::ALL {
        for token in &bad {
            assert_refused(&gateway, door, token.clone()).await;
        }
    }
    assert_eq!(
        gateway.census().open_sessions,
        2,
        "only the bystanders hold sessions"
    );
    still_relaying(&mut web, &mut app).await;
    finish(gateway, web, app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_allows_its_subject_and_role_only() {
    let gateway = TestGateway::start_with(authenticated()).await;
    let (mut web, mut app) = bystanders(&gateway).await;
    for door in Door::ALL {
        let mut client = gateway
            .connect_with_token(door, Some(&token("alice", Some(Role::App))))
            .await;
        // Someone else's uid.
        client
            .send(
                "register",
                Some(json!({"uid": "bystander", "type": 1})),
                Some(1),
            )
            .await;
        client.expect_error("FORBIDDEN", Some(1)).await;
        // The right uid, the wrong role.
        client
            .send(
                "register",
                Some(json!({"uid": "alice", "type": 0})),
                Some(2),
            )
            .await;
        client.expect_error("FORBIDDEN", Some(2)).await;
        // Its own uid and role.
        client.register("alice", "app").await;
        client.close().await;
    }
    still_relaying(&mut web, &mut app).await;
    finish(gateway, web, app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_needs_a_token_for_the_same_subject() {
    let gateway = TestGateway::start_with(authenticated()).await;
    let mut web = gateway
        .connect_with_token(Door::Ws, Some(&token("carol", None)))
        .await;
    let app = gateway
        .connect_with_token(Door::Grpc, Some(&token("carol", None)))
        .await;
    web.register("carol", "web").await;
    let mut app = app;
    app.register("carol", "app").await;
    app.expect("syncfrom").await;
    let (resume, last_seq) = (app.resume_token(), app.last_seq);
    app.abort();
    web.expect("peer_away").await;
    let mut thief = gateway
        .connect_with_token(Door::SocketIo, Some(&token("mallory", None)))
        .await;
    thief
        .send(
            "resume",
            Some(json!({"token": resume, "last_seq": last_seq})),
            Some(3),
        )
        .await;
    thief.expect_error("FORBIDDEN", Some(3)).await;
    thief.close().await;
    let mut owner = gateway
        .connect_with_token(Door::SocketIo, Some(&token("carol", None)))
        .await;
    owner
        .send(
            "resume",
            Some(json!({"token": resume, "last_seq": last_seq})),
            Some(4),
        )
        .await;
    owner.expect("resumed").await;
    owner.expect_ack(4).await;
    web.expect("peer_back").await;
    owner.close().await;
    web.expect("byebye").await;
    web.close().await;
    gateway.assert_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_public_keys_verify_and_refuse_algorithm_confusion() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let directory = std::env::temp_dir().join(format!("signalgate-es256-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("dir");
    let public_path = directory.join("public.pem");
    std::fs::write(&public_path, key.public_key_pem()).expect("write");
    let gateway = TestGateway::start_with(Config {
        jwt_public_key: Some(public_path.to_string_lossy().into_owned()),
        ..test_config()
    })
    .await;
    let claims = json!({"sub": "dave", "exp": now() + 600});
    let good = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).expect("private key"),
    )
    .expect("encode");
    // HS256 "signed" with the public key as the secret: the classic confusion.
    let confused = signed(claims.clone(), Algorithm::HS256, &key.public_key_pem());
    for door in Door::ALL {
        assert_refused(&gateway, door, Some(confused.clone())).await;
        let mut client = gateway.connect_with_token(door, Some(&good)).await;
        client.register("dave", "web").await;
        client.close().await;
    }
    gateway.assert_empty().await;
    let _ = std::fs::remove_dir_all(directory);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_past_the_rate_limit_is_refused_then_closed() {
    let gateway = TestGateway::start_with(Config {
        rate_limit: 20.0,
        rate_burst: 10.0,
        ..authenticated()
    })
    .await;
    let (mut web, mut app) = bystanders(&gateway).await;
    for door in Door::ALL {
        let credential = token("flood", None);
        let mut flooder = gateway.connect_with_token(door, Some(&credential)).await;
        for id in 1..=40u64 {
            // The server may close the flooder before all 40 are out (a
            // release build gets there first on Socket.IO, whose transport
            // then resets): a send failing after that is the point.
            let request = signalgate_client::envelope("ipaddr", None, Some(id));
            if flooder.client.send(&request).await.is_err() {
                break;
            }
        }
        let mut limited = 0;
        let mut seen = Vec::new();
        let closed = loop {
            let next = flooder.next().await;
            seen.push(format!("{next:?}"));
            match next {
                Incoming::Event(event) if event["event"] == "error" => {
                    assert_eq!(event["data"]["code"], "RATE_LIMITED", "{event}");
                    limited += 1;
                }
                Incoming::Event(_) => {}
                Incoming::Closed(closed) => break closed,
            }
        };
        assert!(limited >= 10, "{door}: {limited} refusals; saw {seen:#?}");
        match closed {
            Closed::WebSocket(Some((code, _))) => assert_eq!(code, 4003),
            Closed::Grpc(code, _) => assert_eq!(code, tonic::Code::ResourceExhausted),
            Closed::SocketIo(how) => assert_eq!(how, "server disconnect"),
            other => panic!("{door}: {other:?}"),
        }
    }
    still_relaying(&mut web, &mut app).await;
    finish(gateway, web, app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_registers_is_closed() {
    let gateway = TestGateway::start_with(Config {
        register_timeout: Duration::from_millis(300),
        ..authenticated()
    })
    .await;
    let (mut web, mut app) = bystanders(&gateway).await;
    for door in Door::ALL {
        let mut idle = gateway
            .connect_with_token(door, Some(&token("idle", None)))
            .await;
        idle.expect_error("REGISTER_TIMEOUT", None).await;
        match idle.expect_closed().await {
            Closed::WebSocket(Some((code, _))) => assert_eq!(code, 4004),
            Closed::Grpc(code, _) => assert_eq!(code, tonic::Code::DeadlineExceeded),
            Closed::SocketIo(how) => assert_eq!(how, "server disconnect"),
            other => panic!("{door}: {other:?}"),
        }
    }
    still_relaying(&mut web, &mut app).await;
    finish(gateway, web, app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_are_cut_off() {
    let gateway = TestGateway::start_with(Config {
        header_read_timeout: Duration::from_millis(300),
        ..authenticated()
    })
    .await;
    let (mut web, mut app) = bystanders(&gateway).await;
    let mut slow = tokio::net::TcpStream::connect(gateway.address)
        .await
        .expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut rest = Vec::new();
    // The server gives up on the headers and closes the connection.
    tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .expect("read");
    still_relaying(&mut web, &mut app).await;
    finish(gateway, web, app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_refuse_at_accept() {
    let gateway = TestGateway::start_with(Config {
        max_connections_per_ip: 3,
        max_connections: 5,
        ..test_config()
    })
    .await;
    // Two bystanders from 127.0.0.1.
    let (mut web, mut app) = paired(&gateway, "capped", Door::Ws, Door::Ws).await;
    let third = gateway.connect(Door::Grpc).await;
    // A fourth from the same address is cut at once.
    let mut refused = tokio::net::TcpStream::connect(gateway.address)
        .await
        .expect("tcp");
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), refused.read(&mut buffer))
        .await
        .expect("in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Another address still gets in, up to the total.
    let other = std::net::SocketAddr::new("127.0.0.2".parse().expect("ip"), 0);
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(other).expect("bind 127.0.0.2");
    let mut stream = socket.connect(gateway.address).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    still_relaying(&mut web, &mut app).await;
    third.close().await;
    web.close().await;
    app.expect("byebye").await;
    app.close().await;
    gateway.assert_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_and_a_cancel_mid_relay_leave_everyone_else_alone() {
    let gateway = TestGateway::start().await;
    let (mut web, mut app) = paired(&gateway, "bystander", Door::Ws, Door::Grpc).await;
    // A TCP reset of a WebSocket while its peer floods it.
    let (victim, mut flooder) = paired(&gateway, "reset", Door::Ws, Door::SocketIo).await;
    for n in 0..50 {
        flooder.send("message", Some(json!({"n": n})), None).await;
    }
    let TestClient { client, .. } = victim;
    let Client::Ws(ws) = client else { panic!("ws") };
    ws.reset();
    flooder.expect_next_named("peer_away").await;
    // A cancelled gRPC stream (RST_STREAM CANCEL on a live connection)
    // while its peer floods it.
    let mut other = gateway.connect(Door::Ws).await;
    other.register("cancel", "web").await;
    let (connection, mut stream) = raw_grpc_app(&gateway, "cancel").await;
    for n in 0..50 {
        other.send("message", Some(json!({"n": n})), None).await;
    }
    stream.send_reset(h2::Reason::CANCEL);
    other.expect_next_named("peer_away").await;
    still_relaying(&mut web, &mut app).await;
    flooder.close().await;
    other.close().await;
    web.close().await;
    app.expect("byebye").await;
    app.close().await;
    // The two away sessions are waiting out their window.
    assert_eq!(gateway.census().away_sessions, 2);
    drop(connection);
}

/// Registers an app over a raw HTTP/2 connection (so that the test can
/// cancel its stream with RST_STREAM while the connection stays open);
/// returns the connection's handle and the stream, once paired.
async fn raw_grpc_app(
    gateway: &TestGateway,
    uid: &str,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    h2::SendStream<bytes::Bytes>,
) {
    let (client, mut stream, response) = common::raw_grpc::connect_stream(gateway).await;
    let frame = common::raw_grpc::grpc_frame(false, &common::raw_grpc::register_app(uid, 0));
    stream
        .send_data(bytes::Bytes::from(frame), false)
        .expect("data");
    let response = response.await.expect("response");
    let mut body = response.into_body();
    // welcome, registered, syncfrom: the session is paired.
    let mut received = 0;
    while received < 3 {
        let chunk = body.data().await.expect("data").expect("chunk");
        received += count_grpc_messages(&chunk);
    }
    (client, stream)
}

/// How many length-prefixed gRPC messages start in `chunk` (messages here
/// are small: one chunk holds whole messages).
fn count_grpc_messages(chunk: &[u8]) -> usize {
    let mut at = 0;
    let mut count = 0;
    while at + 5 <= chunk.len() {
        let length =
            u32::from_be_bytes([chunk[at + 1], chunk[at + 2], chunk[at + 3], chunk[at + 4]])
                as usize;
        at += 5 + length;
        count += 1;
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_readiness_are_served() {
    let gateway = TestGateway::start().await;
    let (mut web, mut app) = paired(&gateway, "metrics", Door::Ws, Door::Grpc).await;
    still_relaying(&mut web, &mut app).await;
    let metrics = http_get(&gateway, "/metrics").await;
    for expected in [
        "signalgate_relayed_events_total{event=\"message\",door=\"ws\"}",
        "signalgate_relayed_events_total{event=\"message\",door=\"grpc\"}",
        "signalgate_connections{door=\"ws\",role=\"web\"}",
        "signalgate_pairs",
        "signalgate_relay_latency_seconds_bucket",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from:\n{metrics}"
        );
    }
    let ready = http_get(&gateway, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    finish(gateway, web, app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_turn_credentials_are_counted_and_bad_ice_urls_refused() {
    let gateway = TestGateway::start_with(Config {
        ice_servers: vec!["turn:127.0.0.1:3478".into()],
        turn_secret: Some("counted".into()),
        ..test_config()
    })
    .await;
    let mut client = gateway.connect(Door::Ws).await;
    client.register("counted", "app").await;
    let metrics = http_get(&gateway, "/metrics").await;
    let issued = metrics
        .lines()
        .find_map(|line| line.strip_prefix("signalgate_turn_credentials_issued_total "))
        .unwrap_or_else(|| panic!("no credentials counter in:\n{metrics}"));
    assert!(
        issued.trim().parse::<f64>().expect("a number") >= 1.0,
        "{issued}"
    );
    client.close().await;
    gateway.assert_empty().await;

    // A URL that is no STUN/TURN URL stops the gateway at startup.
    let refused = signalgate::Gateway::from_config(Config {
        ice_servers: vec!["https://turn.example.com".into()],
        ..test_config()
    })
    .await;
    let error = refused.err().expect("refused").to_string();
    assert!(error.contains("stun:"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_grpc_and_wss_on_one_port() {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let directory = std::env::temp_dir().join(format!("signalgate-tls-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("dir");
    let (cert_path, key_path) = (directory.join("cert.pem"), directory.join("key.pem"));
    std::fs::write(&cert_path, certified.cert.pem()).expect("cert");
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).expect("key");
    let gateway = TestGateway::start_with(Config {
        tls_cert: Some(cert_path.to_string_lossy().into_owned()),
        tls_key: Some(key_path.to_string_lossy().into_owned()),
        ..test_config()
    })
    .await;
    let connector = tls_connector(certified.cert.der().to_vec());

    // gRPC over TLS (ALPN h2).
    let address = gateway.address;
    let grpc_connector = connector.clone();
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let connector = grpc_connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(address).await?;
                let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost")
                    .expect("name");
                let tls = connector.connect(name, tcp).await?;
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .expect("tls channel");
    let mut app = GrpcClient::open(channel).await.expect("stream");
    match app.recv().await.expect("welcome") {
        Incoming::Event(event) => assert_eq!(event["event"], "welcome"),
        other => panic!("{other:?}"),
    }
    app.send(&json!({"event": "register", "data": {"uid": "tls", "type": 1}}))
        .await
        .expect("send");

    // wss on the same port (ALPN http/1.1).
    let tcp = tokio::net::TcpStream::connect(address).await.expect("tcp");
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(name, tcp).await.expect("tls");
    let mut web = WsClient::over("wss://localhost/ws", tls)
        .await
        .expect("wss");
    use futures_util::{SinkExt, StreamExt};
    let welcome = web.next().await.expect("frame").expect("ok");
    assert!(welcome.to_text().expect("text").contains("welcome"));
    let register = json!({"event": "register", "data": {"uid": "tls", "type": 0}}).to_string();
    web.send(tokio_tungstenite::tungstenite::Message::text(register))
        .await
        .expect("send");
    let mut got_registered = false;
    while let Some(Ok(frame)) = web.next().await {
        if frame.to_text().expect("text").contains("registered") {
            got_registered = true;
            break;
        }
    }
    assert!(got_registered);
    // The pair works across the two TLS doors.
    let mut saw_syncfrom = false;
    for _ in 0..3 {
        if let Incoming::Event(event) = app.recv().await.expect("recv")
            && event["event"] == "syncfrom"
        {
            saw_syncfrom = true;
            break;
        }
    }
    assert!(saw_syncfrom);
    app.close().await;
    let _ = web.close(None).await;
    gateway.assert_empty().await;
    let _ = std::fs::remove_dir_all(directory);
}

fn tls_connector(root: Vec<u8>) -> tokio_rustls::TlsConnector {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(root))
        .expect("root");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

/// A TCP proxy that can freeze: it stops moving bytes but keeps both
/// sockets open, as a phone that walks into a lift.
struct FreezingProxy {
    address: std::net::SocketAddr,
    freeze: tokio::sync::watch::Sender<bool>,
}

impl FreezingProxy {
    async fn start(target: std::net::SocketAddr) -> FreezingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (freeze, frozen) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, frozen.clone()));
                tokio::spawn(pipe(server_read, client_write, frozen.clone()));
            }
        });
        FreezingProxy { address, freeze }
    }

    fn freeze(&self) {
        let _ = self.freeze.send(true);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: tokio::sync::watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut watch = frozen.clone();
    let freeze = async move {
        let _ = watch.wait_for(|frozen| *frozen).await;
    };
    tokio::pin!(freeze);
    loop {
        tokio::select! {
            read = from.read(&mut buffer) => {
                let read = match read {
                    Ok(0) | Err(_) => return,
                    Ok(read) => read,
                };
                if *frozen.borrow() {
                    break;
                }
                if to.write_all(&buffer[..read]).await.is_err() {
                    return;
                }
            }
            () = &mut freeze => break,
        }
    }
    // Frozen: hold both sockets open and move nothing more.
    let _hold = (from, to);
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_links_are_detected_on_every_door() {
    let gateway = TestGateway::start_with(Config {
        ping_interval: Duration::from_millis(200),
        ping_timeout: Duration::from_millis(300),
        resume_window: Duration::ZERO,
        ..test_config()
    })
    .await;
    let proxy = FreezingProxy::start(gateway.address).await;
    let mut phones = Vec::new();
    let mut peers = Vec::new();
    for (n, door) in Door::ALL.into_iter().enumerate() {
        let uid = format!("lift-{n}");
        // The peers use gRPC: its connection task answers keepalive pings
        // even while the test is not reading (a WebSocket client only
        // answers while it reads, and would rightly be dropped too).
        let mut peer = gateway.connect(Door::Grpc).await;
        peer.register(&uid, "web").await;
        let client = Client::connect(door, proxy.address)
            .await
            .expect("via proxy");
        let mut phone = TestClient {
            client,
            door,
            welcome: json!(null),
            last_seq: 0,
        };
        phone.expect("welcome").await;
        phone.register(&uid, "app").await;
        phone.expect("syncfrom").await;
        phones.push(phone);
        peers.push(peer);
    }
    let frozen_at = std::time::Instant::now();
    proxy.freeze();
    // Within ping interval + timeout (plus scheduling slack), each peer is told.
    for peer in &mut peers {
        peer.expect("byebye").await;
    }
    assert!(
        frozen_at.elapsed() < Duration::from_secs(3),
        "{:?}",
        frozen_at.elapsed()
    );
    for peer in peers {
        peer.close().await;
    }
    drop(phones);
    gateway.assert_empty().await;
}

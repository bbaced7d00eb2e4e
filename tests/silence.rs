//! Connections must make progress or be closed: silent sockets, h2c
//! connections that open no stream, idle keep-alive connections, trickled
//! polling bodies; Socket.IO long-polling sessions are capped and their
//! handshakes rate-limited; an idle connection never holds shutdown.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{TestGateway, paired, still_relaying, test_config};
use signalgate::Config;
use signalgate_client::Door;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const FIRST_REQUEST: Duration = Duration::from_millis(800);
const IDLE: Duration = Duration::from_millis(1500);

fn bounded() -> Config {
    Config {
        header_read_timeout: FIRST_REQUEST,
        idle_timeout: IDLE,
        ..test_config()
    }
}

/// Waits until the server closes `stream` (EOF or reset); returns how long
/// that took. Fails if it is still open after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((start + limit).into(), stream.read(&mut buffer)).await {
            Err(_) => panic!("still open after {limit:?}"),
            Ok(Ok(0) | Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

async fn connect_from(source: &str, address: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse().expect("address"))
        .expect("bind");
    socket.connect(address).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_are_closed_and_free_the_connection_cap() {
    let gateway = TestGateway::start_with(Config {
        max_connections: 6,
        ..bounded()
    })
    .await;
    let (mut web, mut app) = paired(&gateway, "bystander", Door::Ws, Door::Grpc).await;
    // Four sockets that never send a byte fill the cap.
    let opened = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(gateway.address).await.expect("connect"));
    }
    for stream in &mut silent {
        closed_within(stream, FIRST_REQUEST * 4).await;
    }
    let took = opened.elapsed();
    assert!(took >= FIRST_REQUEST / 2, "closed too early: {took:?}");
    // The cap is free again: new clients get in.
    let third = gateway.connect(Door::Ws).await;
    let fourth = gateway.connect(Door::Grpc).await;
    still_relaying(&mut web, &mut app).await;
    third.close().await;
    fourth.close().await;
    common::finish(gateway, web, app).await;
}

/// An h2c connection that answers pings (the h2 client does) but opens no
/// stream is closed after the first-request bound; one whose streams have
/// all ended is closed after the idle bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_connections_without_streams_are_closed() {
    let gateway = TestGateway::start_with(bounded()).await;
    let tcp = TcpStream::connect(gateway.address).await.expect("tcp");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2");
    let start = Instant::now();
    tokio::time::timeout(FIRST_REQUEST * 4, connection)
        .await
        .expect("the server ends a connection that opens no stream")
        .ok();
    assert!(
        start.elapsed() >= FIRST_REQUEST / 2,
        "{:?}",
        start.elapsed()
    );
    drop(client);

    // A stream that comes and goes (a health check), then silence.
    let tcp = TcpStream::connect(gateway.address).await.expect("tcp");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2");
    let mut connection = tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::builder()
        .method("GET")
        .uri(format!("http://{}/healthz", gateway.address))
        .body(())
        .expect("request");
    let (response, _) = client.send_request(request, true).expect("send");
    let mut body = response.await.expect("response").into_body();
    while body.data().await.is_some() {}
    drop(body);
    let idle_from = Instant::now();
    tokio::time::timeout(IDLE * 4, &mut connection)
        .await
        .expect("the server ends an idle connection")
        .ok();
    assert!(idle_from.elapsed() >= IDLE / 2, "{:?}", idle_from.elapsed());
    drop(client);
    gateway.assert_empty().await;
}

/// A keep-alive HTTP/1 connection is closed once idle; one that keeps a
/// request open is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed() {
    let gateway = TestGateway::start_with(bounded()).await;
    let mut stream = TcpStream::connect(gateway.address).await.expect("tcp");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("write");
    let mut answer = [0u8; 256];
    let read = stream.read(&mut answer).await.expect("read");
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
    let took = closed_within(&mut stream, IDLE * 4).await;
    assert!(took >= IDLE / 2, "closed too early: {took:?}");
    // A WebSocket session outlives the idle bound: it left hyper's hands.
    let mut client = gateway.connect(Door::Ws).await;
    tokio::time::sleep(IDLE * 2).await;
    client.send("ipaddr", None, Some(1)).await;
    client.expect("ipaddr").await;
    client.expect_ack(1).await;
    client.close().await;
    gateway.assert_empty().await;
}

/// An Engine.IO polling handshake: the new session's id.
async fn polling_handshake(stream: &mut TcpStream) -> Result<String, String> {
    stream
        .write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("write");
    let response = read_response(stream).await;
    if !response.starts_with("HTTP/1.1 200") {
        return Err(response.lines().next().unwrap_or_default().to_owned());
    }
    let start = response.find("\"sid\":\"").expect("sid") + 7;
    let length = response[start..].find('"').expect("end of sid");
    Ok(response[start..start + length].to_owned())
}

/// One whole HTTP/1.1 response (head and Content-Length body).
async fn read_response(stream: &mut TcpStream) -> String {
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(common::EVENT_TIMEOUT, stream.read(&mut buffer))
            .await
            .expect("in time")
            .expect("read");
        response.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&response).into_owned();
        if common::response_complete(&text) {
            return text;
        }
        assert!(read > 0, "the connection closed mid-response: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_polling_body_is_cut_off() {
    let gateway = TestGateway::start_with(bounded()).await;
    let mut stream = TcpStream::connect(gateway.address).await.expect("tcp");
    let sid = polling_handshake(&mut stream).await.expect("handshake");
    stream
        .write_all(
            format!(
                "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: test\r\n\
                 Content-Type: text/plain\r\nContent-Length: 60000\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("head");
    let start = Instant::now();
    let trickle = async {
        loop {
            if stream.write_all(b"4").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        () = trickle => {}
        () = tokio::time::sleep(FIRST_REQUEST * 5) => panic!("the trickle was never cut off"),
    }
    assert!(
        start.elapsed() >= FIRST_REQUEST / 2,
        "{:?}",
        start.elapsed()
    );
    gateway.assert_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_sessions_are_capped_per_ip_and_in_all_and_expire() {
    let gateway = TestGateway::start_with(Config {
        max_connections: 5,
        max_connections_per_ip: 3,
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        ..test_config()
    })
    .await;
    // One keep-alive connection, many sessions: the connection caps alone
    // would never stop it.
    let mut first = connect_from("127.0.0.1", gateway.address).await;
    for _ in 0..3 {
        polling_handshake(&mut first).await.expect("within the cap");
    }
    assert_eq!(
        polling_handshake(&mut first).await,
        Err("HTTP/1.1 503 Service Unavailable".to_owned()),
        "the per-IP cap"
    );
    let mut second = connect_from("127.0.0.2", gateway.address).await;
    for _ in 0..2 {
        polling_handshake(&mut second)
            .await
            .expect("within the cap");
    }
    assert_eq!(
        polling_handshake(&mut second).await,
        Err("HTTP/1.1 503 Service Unavailable".to_owned()),
        "the total cap"
    );
    // Sessions that go silent stop counting once Engine.IO has closed them.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match polling_handshake(&mut second).await {
            Ok(_) => break,
            Err(refused) => {
                assert!(Instant::now() < deadline, "never admitted again: {refused}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    gateway.assert_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_handshakes_are_rate_limited_per_ip() {
    let gateway = TestGateway::start_with(Config {
        socketio_handshake_rate: 2.0,
        ..test_config()
    })
    .await;
    let mut stream = connect_from("127.0.0.3", gateway.address).await;
    // A burst of twice the rate, then 429.
    for _ in 0..4 {
        polling_handshake(&mut stream)
            .await
            .expect("within the burst");
    }
    assert_eq!(
        polling_handshake(&mut stream).await,
        Err("HTTP/1.1 429 Too Many Requests".to_owned())
    );
    // Another address has its own budget, and the client doors are untouched.
    let mut other = connect_from("127.0.0.4", gateway.address).await;
    polling_handshake(&mut other).await.expect("another IP");
    let (mut web, mut app) = paired(&gateway, "bystander", Door::Ws, Door::Grpc).await;
    still_relaying(&mut web, &mut app).await;
    common::finish(gateway, web, app).await;
}

/// SIGTERM's path with an idle h2c connection open (its client sent the
/// preface and its SETTINGS, then went quiet: it never acknowledges the
/// server's GOAWAY ping): shutdown does not wait out its grace for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_h2c_connection_does_not_hold_shutdown() {
    let gateway = TestGateway::start_with(Config {
        shutdown_grace: Duration::from_secs(8),
        ..test_config()
    })
    .await;
    let mut quiet = TcpStream::connect(gateway.address).await.expect("tcp");
    quiet
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("preface and empty SETTINGS");
    // Served as HTTP/2 from here on (the server's SETTINGS arrive).
    let mut settings = [0u8; 9];
    quiet
        .read_exact(&mut settings)
        .await
        .expect("server SETTINGS");
    assert_eq!(settings[3], 0x4, "a SETTINGS frame");
    let hub = gateway.hub.clone();
    let start = Instant::now();
    gateway.stop().await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        start.elapsed()
    );
    assert!(hub.census().is_empty());
}

//! The real binary: SIGTERM with open sessions on every door closes them
//! with SHUTTING_DOWN and exits 0 within the grace period; the token
//! subcommand mints what the gateway accepts.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use signalgate::client::{Client, Closed, ConnectOptions, Door, Incoming, envelope};

const BINARY: &str = env!("CARGO_BIN_EXE_signalgate");

/// Starts the binary on an ephemeral port; returns it and its address.
fn start(extra: &[&str]) -> (std::process::Child, SocketAddr) {
    let mut child = Command::new(BINARY)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--shutdown-grace",
            "5s",
            "--log-format",
            "json",
        ])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn signalgate");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("the gateway logs its address")
            .expect("read");
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(address) = entry["fields"]["address"].as_str() {
            break address.parse().expect("address");
        }
    };
    // Keep draining the logs so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, address)
}

async fn connected(door: Door, address: SocketAddr, token: Option<&str>) -> Client {
    let options = ConnectOptions {
        token: token.map(str::to_owned),
        ..ConnectOptions::default()
    };
    let mut client = Client::connect_with(door, address, &options)
        .await
        .expect("connect");
    match client.recv().await.expect("welcome") {
        Incoming::Event(event) => assert_eq!(event["event"], "welcome"),
        other => panic!("{other:?}"),
    }
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_session_and_exits_within_the_grace_period() {
    let (mut child, address) = start(&[]);
    let mut clients = Vec::new();
    for (n, door) in Door::ALL.into_iter().enumerate() {
        let uid = format!("term-{n}");
        let mut web = connected(door, address, None).await;
        let mut app = connected(Door::ALL[(n + 1) % 3], address, None).await;
        web.send(&envelope(
            "register",
            Some(json!({"uid": uid, "type": 0})),
            None,
        ))
        .await
        .expect("send");
        app.send(&envelope(
            "register",
            Some(json!({"uid": uid, "type": 1})),
            None,
        ))
        .await
        .expect("send");
        clients.push(web);
        clients.push(app);
    }
    // Let the registrations land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let terminated = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    for mut client in clients {
        let door = client.door();
        let mut told = false;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), client.recv())
                .await
                .expect("in time")
                .expect("recv")
            {
                Incoming::Event(event) if event["event"] == "error" => {
                    assert_eq!(event["data"]["code"], "SHUTTING_DOWN", "{door}: {event}");
                    told = true;
                }
                Incoming::Event(_) => {}
                Incoming::Closed(closed) => {
                    match closed {
                        Closed::WebSocket(Some((code, _))) => assert_eq!(code, 1001),
                        Closed::Grpc(code, _) => assert_eq!(code, tonic::Code::Unavailable),
                        Closed::SocketIo(_) => {}
                        other => panic!("{door}: {other:?}"),
                    }
                    break;
                }
            }
        }
        assert!(told, "{door} was not told SHUTTING_DOWN");
    }
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            terminated.elapsed() < Duration::from_secs(6),
            "still running after the grace period"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_subcommand_mints_what_the_gateway_accepts() {
    let output = Command::new(BINARY)
        .args(["token", "--uid", "minted", "--role", "app", "--ttl", "5m"])
        .env("SIGNALGATE_JWT_SECRET", "process-test-secret")
        .output()
        .expect("token");
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    let (mut child, address) = start(&["--jwt-secret", "process-test-secret"]);
    let mut client = connected(Door::Grpc, address, Some(&token)).await;
    client
        .send(&envelope(
            "register",
            Some(json!({"uid": "minted", "type": 1})),
            Some(1),
        ))
        .await
        .expect("send");
    match client.recv().await.expect("recv") {
        Incoming::Event(event) => assert_eq!(event["event"], "registered", "{event}"),
        other => panic!("{other:?}"),
    }
    let _ = child.kill();
    let _ = child.wait();
}

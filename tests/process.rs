//! The real binary: SIGTERM with open sessions on every door closes them
//! with SHUTTING_DOWN and exits 0 within the grace period; the token
//! subcommand mints what the gateway accepts.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{BINARY, connected};
use serde_json::json;
use signalgate_client::{Closed, Door, Incoming, envelope};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_session_and_exits_within_the_grace_period() {
    let (mut child, address) = common::spawn_gateway(&["--shutdown-grace", "5s"]);
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
    let (mut child, address) = common::spawn_gateway(&[
        "--shutdown-grace",
        "5s",
        "--jwt-secret",
        "process-test-secret",
    ]);
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

async fn register(client: &mut signalgate_client::Client, uid: &str, role: u8) {
    let frame = envelope("register", Some(json!({"uid": uid, "type": role})), None);
    client.send(&frame).await.expect("send");
}

/// The log contract of docs/OPERATIONS.md at the default level: a line per
/// pairing, per replacing registration and per disconnect, none for a plain
/// registration, and never a resume token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_logs_pairings_replacements_and_disconnects_but_no_tokens() {
    let (mut child, address, logs) = common::spawn_gateway_with_logs(&[]);
    let (mut web, welcome) = common::connected_with_welcome(Door::Ws, address, None).await;
    let token = welcome["data"]["resumeToken"]
        .as_str()
        .expect("a resume token")
        .to_owned();
    let mut app = connected(Door::Grpc, address, None).await;
    register(&mut web, "logged", 0).await;
    register(&mut app, "logged", 1).await;
    let mut newer_app = connected(Door::SocketIo, address, None).await;
    register(&mut newer_app, "logged", 1).await;
    // Let the registrations and the replacement land, then end everything.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for client in [web, app, newer_app] {
        client.close().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = child.kill();
    let _ = child.wait();
    let lines: Vec<serde_json::Value> = logs.try_iter().collect();
    let named = |message: &str| {
        lines
            .iter()
            .filter(|line| line["fields"]["message"] == message)
            .collect::<Vec<_>>()
    };
    let pairings = named("paired");
    assert_eq!(
        pairings.len(),
        2,
        "first app, then the newer one: {lines:#?}"
    );
    assert!(
        pairings
            .iter()
            .all(|line| line["fields"]["uid"] == "logged")
    );
    let registrations = named("registered");
    assert_eq!(registrations.len(), 1, "only the replacing one: {lines:#?}");
    assert_eq!(registrations[0]["fields"]["replaced"], true);
    assert_eq!(registrations[0]["fields"]["door"], "socketio");
    let disconnects = named("disconnected");
    assert_eq!(disconnects.len(), 3, "{lines:#?}");
    for line in &lines {
        let text = line.to_string();
        assert!(!text.contains(&token), "a resume token in the logs: {text}");
    }
}

/// Credentials in a webhook or JWKS URL never reach a log line: every URL
/// is logged with its user info replaced by `***` (at debug level too).
#[test]
fn credentials_in_urls_never_reach_the_logs() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = Command::new(BINARY)
        .args(["--listen", "127.0.0.1:0"])
        .args([
            "--webhook-url",
            "http://hook-user:hook-pass-secret@127.0.0.1:9/hooks",
            "--webhook-secret",
            "webhook-signing-secret",
            "--jwt-jwks-url",
            "http://jwks-user:jwks-pass-secret@127.0.0.1:9/jwks",
        ])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn signalgate");
    let stderr = child.stderr.take().expect("stderr");
    let mut seen = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("read");
        let done = line.contains("JWKS fetch failed");
        seen.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let logs = seen.join("\n");
    assert!(logs.contains("JWKS fetch failed"), "{logs}");
    for secret in [
        "hook-pass-secret",
        "jwks-pass-secret",
        "hook-user",
        "jwks-user",
    ] {
        assert!(!logs.contains(secret), "{secret} was logged:\n{logs}");
    }
    assert!(logs.contains("***@127.0.0.1:9/hooks"), "{logs}");
    assert!(logs.contains("***@127.0.0.1:9/jwks"), "{logs}");
}

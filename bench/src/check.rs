//! `signalgate-check`: after a deploy, runs the scenario suite's core
//! against a live deployment on every pair of doors (web door × app door)
//! and prints a pass/fail table. Each scenario pairs a web and an app under
//! a fresh uid (both registering at once), relays both ways, drops the app's connection and resumes it
//! on a new one (through a load balancer, often on another node), relays
//! again, and ends with `byebye`. Exit status 1 if any pair fails.
//!
//! ```sh
//! signalgate-check --address lb.example.com:443           # one port for every door
//! signalgate-check --address 127.0.0.1:8080 --grpc-address 127.0.0.1:8081   # nginx
//! signalgate-check --address 127.0.0.1:8080 --closes 5   # closes keep their code
//! ```

#![forbid(unsafe_code)]

mod closes;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use serde_json::{Value, json};
use signalgate_client::{Client, ConnectOptions, Door, Incoming, envelope};

/// Runs the scenario suite against a live deployment on every pair of doors.
#[derive(Debug, Parser)]
#[command(name = "signalgate-check", version)]
struct Args {
    /// The deployment's address (host:port) for every door.
    #[arg(long)]
    address: String,
    /// The gRPC door's address, when it differs (nginx: a second port).
    #[arg(long)]
    grpc_address: Option<String>,
    /// A JWT for every connection, when the deployment requires one.
    #[arg(long, env = "SIGNALGATE_CHECK_TOKEN")]
    token: Option<String>,
    /// How long one step may wait for an event.
    #[arg(long, default_value = "5", value_name = "SECONDS")]
    timeout: u64,
    /// Instead of the door pairs: run each case of closes the server starts
    /// (oversized message, binary frame, oversized gRPC message) this many
    /// times, each expecting its close code to arrive whole.
    #[arg(long, value_name = "ROUNDS")]
    closes: Option<usize>,
}

/// One connection, with its door and what it has seen.
struct Side {
    client: Client,
    door: Door,
    welcome: Value,
    last_seq: u64,
    step_timeout: Duration,
}

impl Side {
    async fn next(&mut self) -> anyhow::Result<Value> {
        match tokio::time::timeout(self.step_timeout, self.client.recv()).await {
            Err(_) => bail!("{}: nothing within {:?}", self.door, self.step_timeout),
            Ok(Err(error)) => bail!("{}: {error}", self.door),
            Ok(Ok(Incoming::Closed(closed))) => bail!("{}: closed: {closed:?}", self.door),
            Ok(Ok(Incoming::Event(event))) => {
                if event["event"] == "resumed" {
                    self.last_seq = 0;
                }
                if let Some(seq) = event.get("seq").and_then(Value::as_u64) {
                    self.last_seq = self.last_seq.max(seq);
                }
                Ok(event)
            }
        }
    }

    /// Skips to the event `name` (acks of requests without interest are
    /// skipped); returns its data.
    async fn expect(&mut self, name: &str) -> anyhow::Result<Value> {
        loop {
            let event = self.next().await?;
            if event["event"] == name {
                return Ok(event.get("data").cloned().unwrap_or(Value::Null));
            }
            if event["event"] == "error" || event["event"] == "byebye" {
                bail!("{}: expected {name}, got {event}", self.door);
            }
        }
    }

    async fn send(&mut self, event: &str, data: Value, id: Option<u64>) -> anyhow::Result<()> {
        self.client
            .send(&envelope(event, Some(data), id))
            .await
            .with_context(|| format!("{}: send {event}", self.door))
    }
}

struct Target {
    address: SocketAddr,
    grpc_address: SocketAddr,
    token: Option<String>,
    step_timeout: Duration,
}

impl Target {
    async fn connect(&self, door: Door) -> anyhow::Result<Side> {
        let address = if door == Door::Grpc {
            self.grpc_address
        } else {
            self.address
        };
        let options = ConnectOptions {
            token: self.token.clone(),
            ..ConnectOptions::default()
        };
        let client = Client::connect_with(door, address, &options)
            .await
            .with_context(|| format!("{door}: connect to {address}"))?;
        let mut side = Side {
            client,
            door,
            welcome: Value::Null,
            last_seq: 0,
            step_timeout: self.step_timeout,
        };
        side.welcome = side.expect("welcome").await?;
        Ok(side)
    }
}

/// One pair's life on (web door, app door).
async fn scenario(
    target: &Target,
    web_door: Door,
    app_door: Door,
    uid: &str,
) -> anyhow::Result<()> {
    let mut web = target.connect(web_door).await?;
    let mut app = target.connect(app_door).await?;
    // Both register at once (often on two nodes): whichever bind comes
    // second finds the other, and the app gets `syncfrom` either way.
    web.send("register", json!({"uid": uid, "type": "web"}), Some(1))
        .await?;
    app.send("register", json!({"uid": uid, "type": "app"}), Some(1))
        .await?;
    let web_registered = web.expect("registered").await?;
    let app_registered = app.expect("registered").await?;
    if web_registered["peerPresent"] != true && app_registered["peerPresent"] != true {
        bail!("neither side found its peer: {web_registered} {app_registered}");
    }
    app.expect("syncfrom").await?;
    app.send("syncto", json!({"v": 1}), Some(2)).await?;
    if web.expect("syncto").await? != json!({"v": 1}) {
        bail!("syncto changed on the way");
    }
    web.send("message", json!({"sdp": "offer"}), Some(2))
        .await?;
    if app.expect("message").await? != json!({"sdp": "offer"}) {
        bail!("message changed on the way");
    }
    // The app's network drops; it resumes on a new connection.
    let token = app.welcome["resumeToken"]
        .as_str()
        .ok_or_else(|| anyhow!("no resume token in welcome (resumption off?)"))?
        .to_owned();
    let last_seq = app.last_seq;
    app.client.abort();
    web.expect("peer_away").await?;
    web.send("message", json!({"while": "away"}), None).await?;
    let mut app = target.connect(app_door).await?;
    app.send(
        "resume",
        json!({"token": token, "last_seq": last_seq}),
        Some(3),
    )
    .await?;
    app.expect("resumed").await?;
    if app.expect("message").await? != json!({"while": "away"}) {
        bail!("the missed message was not replayed");
    }
    web.expect("peer_back").await?;
    app.send("message", json!({"sdp": "answer"}), Some(4))
        .await?;
    if web.expect("message").await? != json!({"sdp": "answer"}) {
        bail!("message after the resume changed on the way");
    }
    web.client.close().await;
    app.expect("byebye").await?;
    app.client.close().await;
    Ok(())
}

/// `--closes ROUNDS`: each close case `rounds` times; exit 1 if any
/// round of any case failed.
async fn check_closes(target: &Target, rounds: usize) -> std::process::ExitCode {
    let mut failures = 0;
    for case in closes::Case::ALL {
        let address = match case {
            closes::Case::GrpcOversized => target.grpc_address,
            _ => target.address,
        };
        let mut passed = 0;
        for _ in 0..rounds {
            match closes::run(case, address, target.token.as_deref(), target.step_timeout).await {
                Ok(()) => passed += 1,
                Err(error) => println!("{}: FAIL: {error:#}", case.name()),
            }
        }
        failures += rounds - passed;
        println!("{}: {passed} of {rounds} pass", case.name());
    }
    if failures == 0 {
        println!("every close arrived with its code");
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    }
}

fn resolve(address: &str) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    address
        .to_socket_addrs()
        .with_context(|| format!("resolve {address}"))?
        .next()
        .ok_or_else(|| anyhow!("{address} resolves to nothing"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let target = match (|| -> anyhow::Result<Target> {
        let address = resolve(&args.address)?;
        Ok(Target {
            address,
            grpc_address: args.grpc_address.as_deref().map_or(Ok(address), resolve)?,
            token: args.token.clone(),
            step_timeout: Duration::from_secs(args.timeout),
        })
    })() {
        Ok(target) => target,
        Err(error) => {
            eprintln!("signalgate-check: {error:#}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Some(rounds) = args.closes {
        return check_closes(&target, rounds).await;
    }
    let run = std::process::id();
    let mut failures = 0;
    println!("{:<10} {:<10} result", "web door", "app door");
    for web_door in Door::ALL {
        for app_door in Door::ALL {
            let uid = format!("check-{run}-{web_door}-{app_door}");
            match scenario(&target, web_door, app_door, &uid).await {
                Ok(()) => println!(
                    "{:<10} {:<10} pass",
                    web_door.to_string(),
                    app_door.to_string()
                ),
                Err(error) => {
                    failures += 1;
                    println!(
                        "{:<10} {:<10} FAIL: {error:#}",
                        web_door.to_string(),
                        app_door.to_string()
                    );
                }
            }
        }
    }
    if failures == 0 {
        println!("all 9 door pairs pass");
        std::process::ExitCode::SUCCESS
    } else {
        println!("{failures} of 9 door pairs failed");
        std::process::ExitCode::from(1)
    }
}

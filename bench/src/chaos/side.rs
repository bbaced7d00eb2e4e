//! One side of a pair (a web or an app session) as a resilient client:
//! registers, relays numbered messages at a fixed rate, and on any drop
//! reconnects through the balancer and resumes (`resume {token, last_seq}`,
//! then re-sends every message it has no answer for, with its original
//! request id, as docs/PROTOCOL.md *Session resume* tells clients to). When
//! a resume fails (the session's node was killed) it registers afresh.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use signalgate_client::{Client, ConnectOptions, Door, Incoming, envelope};
use tokio::sync::watch;

use crate::ledger::{Outcome, SideRecord};
use crate::{Clock, Phase};

/// Where and how one side connects.
pub struct SideSpec {
    pub uid: String,
    /// `"web"` or `"app"`.
    pub role: &'static str,
    pub door: Door,
    pub target: SocketAddr,
    pub interval: Duration,
    /// Where this side's first send falls within an interval.
    pub offset: Duration,
    /// This side's number, to pick the sessions a network drop cuts.
    pub index: usize,
}

/// What the driver tells every side while it runs.
#[derive(Clone)]
pub struct SideControl {
    pub phase: watch::Receiver<Phase>,
    /// (drop number, percent of sessions cut): a network drop.
    pub drops: watch::Receiver<(u64, u64)>,
    /// Sides registered at least once (the driver reports when all are).
    pub registered: Arc<AtomicUsize>,
}

/// How long one step of a (re)connection may take.
const STEP: Duration = Duration::from_secs(5);

/// The session a side holds, across connections.
#[derive(Default)]
struct Held {
    token: Option<String>,
    last_seq: u64,
    registered: bool,
    next_id: u64,
    next_n: u64,
    /// Requests without an answer yet: request id → message number.
    unacked: BTreeMap<u64, u64>,
}

/// Why a connection's loop stopped.
enum Stop {
    /// Reconnect (after this pause) and resume.
    Reconnect(Duration),
    /// The run is over.
    Finished,
}

/// Runs one side until the driver finishes; returns what it saw.
pub async fn run(spec: SideSpec, clock: Clock, mut control: SideControl) -> SideRecord {
    let mut record = SideRecord::default();
    let mut held = Held {
        next_id: 1,
        next_n: 1,
        ..Held::default()
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        if *control.phase.borrow() == Phase::Finish {
            return record;
        }
        // Clients come from many addresses, as real ones do (the balancer
        // hashes Socket.IO clients by address).
        let options = ConnectOptions {
            source: Some(std::net::IpAddr::from([
                127,
                0,
                1,
                (spec.index % 250) as u8 + 1,
            ])),
            ..ConnectOptions::default()
        };
        let connecting = Client::connect_with(spec.door, spec.target, &options);
        let client = match tokio::time::timeout(STEP, connecting).await {
            Ok(Ok(client)) => client,
            failed => {
                let why = match failed {
                    Ok(Err(error)) => error.to_string().chars().take(60).collect::<String>(),
                    _ => "timed out".to_owned(),
                };
                record.count(format!("connect {}: {why}", spec.door));
                record.connect_failures += 1;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        record.connections += 1;
        match serve(client, &spec, &clock, &mut control, &mut held, &mut record).await {
            Ok(Stop::Finished) => return record,
            Ok(Stop::Reconnect(pause)) => {
                backoff = Duration::from_millis(100);
                tokio::time::sleep(pause).await;
            }
            Err(()) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Sends one envelope, flushed.
async fn send(client: &mut Client, event: &str, data: Value, id: u64) -> Result<(), ()> {
    client
        .send(&envelope(event, Some(data), Some(id)))
        .await
        .map_err(|_| ())
}

/// The next event, within [`STEP`]; `Err` when the connection is gone.
async fn next(client: &mut Client) -> Result<Value, ()> {
    match tokio::time::timeout(STEP, client.recv()).await {
        Ok(Ok(Incoming::Event(event))) => Ok(event),
        _ => Err(()),
    }
}

fn name(event: &Value) -> &str {
    event.get("event").and_then(Value::as_str).unwrap_or("")
}

/// One connection: welcome, resume or register, then relay until it drops.
async fn serve(
    mut client: Client,
    spec: &SideSpec,
    clock: &Clock,
    control: &mut SideControl,
    held: &mut Held,
    record: &mut SideRecord,
) -> Result<Stop, ()> {
    let welcome = next(&mut client).await?;
    if name(&welcome) != "welcome" {
        return Err(());
    }
    let fresh_token = welcome["data"]["resumeToken"].as_str().map(str::to_owned);
    if held.registered && !resume(&mut client, clock, held, record).await? {
        held.registered = false;
    }
    if !held.registered {
        register(&mut client, spec, held, record).await?;
        if record.connections_registered == 0 {
            control.registered.fetch_add(1, Ordering::Relaxed);
        }
        record.connections_registered += 1;
        held.token = fresh_token;
        held.last_seq = 0;
    }
    record.note_node(clock.now_ms(), held.token.as_deref());
    // Re-send what has no answer, with its original id (a resumed session
    // answers `ack` without applying it twice).
    let resend: Vec<(u64, u64)> = held.unacked.iter().map(|(&id, &n)| (id, n)).collect();
    for (id, n) in resend {
        send(&mut client, "message", json!({ "n": n }), id).await?;
    }
    relay(client, spec, clock, control, held, record).await
}

/// How long a side keeps retrying a resume answered `UNAVAILABLE` (the
/// gateway's resume window is 30 s).
const RESUME_RETRY_FOR_MS: u64 = 20_000;

/// `resume {token, last_seq}`: `Ok(true)` when the session came back;
/// `Ok(false)` when it was refused (counted by code), and the side
/// registers afresh. `UNAVAILABLE` (the shared registry or the session's
/// node did not answer in time) is retried on the same connection after a
/// backoff, as PROTOCOL.md says and the browser SDK does: the session is
/// still held for its resume window.
async fn resume(
    client: &mut Client,
    clock: &Clock,
    held: &mut Held,
    record: &mut SideRecord,
) -> Result<bool, ()> {
    let token = held.token.clone().unwrap_or_default();
    let first_try_ms = clock.now_ms();
    let mut backoff = Duration::from_millis(100);
    loop {
        let id = held.next_id;
        held.next_id += 1;
        let data = json!({"token": token, "last_seq": held.last_seq});
        send(client, "resume", data, id).await?;
        let code = loop {
            let event = next(client).await?;
            match name(&event) {
                "resumed" => {
                    held.token = event["data"]["resumeToken"].as_str().map(str::to_owned);
                    note_seq(&event, held);
                    return Ok(true);
                }
                "error" if event["id"].as_u64() == Some(id) => {
                    break event["data"]["code"].as_str().unwrap_or("?").to_owned();
                }
                _ => {}
            }
        };
        if code == "UNAVAILABLE" && clock.now_ms() - first_try_ms < RESUME_RETRY_FOR_MS {
            record.count("resume retried: UNAVAILABLE".to_owned());
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            continue;
        }
        // The session is gone (its node was killed, or the window passed):
        // what it had unanswered is not re-sent.
        record.count(format!("resume refused: {code}"));
        record.sessions_lost.push(clock.now_ms());
        for n in std::mem::take(&mut held.unacked).into_values() {
            record.answer(n, Outcome::Unanswered);
        }
        return Ok(false);
    }
}

/// `register {uid, type}`, waiting for `registered`.
async fn register(
    client: &mut Client,
    spec: &SideSpec,
    held: &mut Held,
    record: &mut SideRecord,
) -> Result<(), ()> {
    let id = held.next_id;
    held.next_id += 1;
    let data = json!({"uid": spec.uid, "type": spec.role});
    send(client, "register", data, id).await?;
    loop {
        let event = next(client).await?;
        match name(&event) {
            "registered" => {
                held.registered = true;
                note_seq(&event, held);
                return Ok(());
            }
            "error" if event["id"].as_u64() == Some(id) => {
                let code = event["data"]["code"].as_str().unwrap_or("?");
                record.count(format!("register refused: {code}"));
                return Err(());
            }
            _ => note_seq(&event, held),
        }
    }
}

fn note_seq(event: &Value, held: &mut Held) {
    if let Some(seq) = event.get("seq").and_then(Value::as_u64) {
        held.last_seq = held.last_seq.max(seq);
    }
}

/// Whether this side is among `percent` of sessions a drop cuts.
fn is_cut(index: usize, drop: u64, percent: u64) -> bool {
    let mixed = (index as u64 ^ drop.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_mul(0xff51_afd7_ed55_8ccd);
    (mixed >> 32) % 100 < percent
}

/// Relays until the connection drops, a drain asks to reconnect, or the run ends.
async fn relay(
    mut client: Client,
    spec: &SideSpec,
    clock: &Clock,
    control: &mut SideControl,
    held: &mut Held,
    record: &mut SideRecord,
) -> Result<Stop, ()> {
    let start = tokio::time::Instant::now() + spec.offset;
    let mut ticks = tokio::time::interval_at(start, spec.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    control.drops.mark_unchanged();
    loop {
        tokio::select! {
            changed = control.phase.changed() => {
                if changed.is_err() || *control.phase.borrow() == Phase::Finish {
                    client.close().await;
                    return Ok(Stop::Finished);
                }
            }
            changed = control.drops.changed() => {
                let (drop, percent) = *control.drops.borrow_and_update();
                if changed.is_ok() && is_cut(spec.index, drop, percent) {
                    record.cut += 1;
                    client.abort();
                    return Ok(Stop::Reconnect(Duration::from_millis(200)));
                }
            }
            _ = ticks.tick() => {
                if *control.phase.borrow() != Phase::Relay {
                    continue;
                }
                let (id, n) = (held.next_id, held.next_n);
                held.next_id += 1;
                held.next_n += 1;
                held.unacked.insert(id, n);
                record.sent(n, clock.now_ms());
                send(&mut client, "message", json!({ "n": n }), id).await?;
            }
            incoming = client.recv() => {
                let event = match incoming {
                    Ok(Incoming::Event(event)) => event,
                    _ => return Ok(Stop::Reconnect(Duration::from_millis(100))),
                };
                note_seq(&event, held);
                let at = clock.now_ms();
                match name(&event) {
                    "message" => {
                        if let Some(n) = event["data"]["n"].as_u64() {
                            record.received(n, at);
                        }
                    }
                    "ack" => {
                        if let Some(n) = event["id"].as_u64().and_then(|id| held.unacked.remove(&id)) {
                            record.answer(n, Outcome::Acked);
                        }
                    }
                    "error" => {
                        let code = event["data"]["code"].as_str().unwrap_or("?").to_owned();
                        match event["id"].as_u64().and_then(|id| held.unacked.remove(&id)) {
                            Some(n) => record.answer(n, Outcome::Refused(code)),
                            None => record.count(code),
                        }
                    }
                    "byebye" if *control.phase.borrow() != Phase::Finish => {
                        record.byebyes.push(at);
                    }
                    "reconnect" => {
                        if let Some(token) = event["data"]["resume_token"].as_str() {
                            held.token = Some(token.to_owned());
                        }
                        let after = event["data"]["after_ms"].as_u64().unwrap_or(0);
                        record.reconnects += 1;
                        return Ok(Stop::Reconnect(Duration::from_millis(after)));
                    }
                    _ => {}
                }
            }
        }
    }
}

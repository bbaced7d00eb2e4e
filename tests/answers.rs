//! Every request is answered exactly once, on every door, with or without
//! a request id (docs/PROTOCOL.md rule 9): a property test over random
//! sequences of requests — good and bad, registered or not, ids absent,
//! repeated or 0 — against a real gateway.
//!
//! Each request is followed by a sentinel (a `register` with an empty uid
//! and its own id, answered by exactly one `error BAD_REQUEST` on every
//! door), so everything read before the
//! sentinel's answer belongs to the request. Per request: at most one `ack`
//! or `error`; exactly one when it carried an id the door reads as one; an
//! `error` names the request's id when it has one; and a request with no
//! `ack`/`error` took effect (its own answer arrived, or the peer received
//! the relay). The peer receives exactly the relays that took effect.
//!
//! Sequences also drop the connection abruptly and resume on another door
//! (with or without an id on the `resume`): a registered session comes back
//! with `resumed`, and from then on a request whose id is at or below the
//! highest the session has seen is a re-send, acknowledged and not applied.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::{TestClient, TestGateway};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{Value, json};
use signalgate_client::Door;

/// What a generated request asks for.
#[derive(Clone, Copy, Debug)]
enum Ask {
    Register,
    Message,
    SyncTo,
    IpAddr,
    IceServers,
    UnknownEvent,
    BadRegister,
    BogusResume,
    /// Drop the connection without a close, then resume on the next door.
    DropAndResume,
}

/// The id a generated request carries.
#[derive(Clone, Copy, Debug)]
enum IdChoice {
    None,
    Zero,
    /// From a small set, so ids repeat.
    Small(u64),
}

fn request() -> impl Strategy<Value = (Ask, IdChoice)> {
    let ask = prop_oneof![
        Just(Ask::Register),
        Just(Ask::Message),
        Just(Ask::Message),
        Just(Ask::SyncTo),
        Just(Ask::IpAddr),
        Just(Ask::IceServers),
        Just(Ask::UnknownEvent),
        Just(Ask::BadRegister),
        Just(Ask::BogusResume),
        Just(Ask::DropAndResume),
    ];
    let id = prop_oneof![
        Just(IdChoice::None),
        Just(IdChoice::Zero),
        (1u64..=3).prop_map(IdChoice::Small),
    ];
    (ask, id)
}

/// Sentinel ids: far above the generated ones, unique per request.
static SENTINEL: AtomicU64 = AtomicU64::new(1_000_000);
/// Uids: one per case.
static CASE: AtomicU64 = AtomicU64::new(0);

/// Whether a request carrying `id` gets past the door's decoding (id 0 is
/// refused as a JSON `id` or a Socket.IO `{"id"}` argument; it is "none"
/// on gRPC).
fn id_decodes(door: Door, id: IdChoice) -> bool {
    !matches!(id, IdChoice::Zero) || door == Door::Grpc
}

/// Whether `door` reads `id` as a request id.
fn carries_id(door: Door, id: IdChoice) -> Option<u64> {
    match (door, id) {
        (_, IdChoice::None) => None,
        (Door::Grpc, IdChoice::Zero) => None,
        // JSON `"id": 0` is not a valid id (BAD_REQUEST without one); a
        // Socket.IO callback 0 is a real callback.
        (Door::Ws, IdChoice::Zero) => None,
        (Door::SocketIo, IdChoice::Zero) => Some(0),
        (_, IdChoice::Small(id)) => Some(id),
    }
}

/// What the test knows of the session its client is attached to.
struct Model {
    registered: bool,
    /// Whether the session was ever resumed (from then on ids are checked).
    resumed: bool,
    /// The highest client-chosen id the session's requests carried.
    highest: u64,
    token: String,
}

async fn run_case(gateway: &TestGateway, door: Door, requests: Vec<(Ask, IdChoice)>) {
    let uid = format!("answers-{}", CASE.fetch_add(1, Ordering::Relaxed));
    let mut peer = gateway.connect(Door::Ws).await;
    peer.register(&uid, "web").await;
    let mut door = door;
    let mut client = gateway.connect(door).await;
    let mut model = Model {
        registered: false,
        resumed: false,
        highest: 0,
        token: client.resume_token(),
    };
    let mut took_effect = Vec::new();
    for (n, (ask, id_choice)) in requests.iter().copied().enumerate() {
        let n = n as u64;
        let raw_id = match id_choice {
            IdChoice::None => None,
            IdChoice::Zero => Some(0),
            IdChoice::Small(id) => Some(id),
        };
        if let Ask::DropAndResume = ask {
            let last_seq = client.last_seq;
            client.abort();
            door = Door::ALL[(n as usize) % Door::ALL.len()];
            client = gateway.connect(door).await;
            let resume = json!({"token": model.token, "last_seq": last_seq});
            client
                .client
                .send(&with_id("resume", Some(resume), raw_id))
                .await
                .expect("send");
            let decodes = id_decodes(door, id_choice);
            let mut answers = Vec::new();
            if model.registered && decodes {
                // `resumed` comes unprompted: nothing else the client sends
                // may be needed to get it out.
                let resumed = client.next_event().await;
                assert_eq!(resumed["event"], "resumed", "{door}: {resumed}");
                answers.push(resumed);
            }
            answers.extend(answers_to_this(&mut client).await);
            let what = format!("{door}: request {n} resume {id_choice:?}; answers {answers:?}");
            check_replies(&answers, door, id_choice, &what);
            match answers.iter().find(|event| event["event"] == "resumed") {
                Some(resumed) => {
                    assert!(model.registered, "an unregistered session resumed: {what}");
                    model.resumed = true;
                    model.token = resumed["data"]["resumeToken"]
                        .as_str()
                        .expect("a fresh token")
                        .to_owned();
                }
                None => {
                    assert!(
                        !(model.registered && decodes),
                        "a registered session did not resume: {what}"
                    );
                    // A fresh, unregistered session on the new connection,
                    // which has seen the failed `resume`'s id: once it is
                    // resumed itself, that id counts as seen too.
                    model = Model {
                        registered: false,
                        resumed: false,
                        highest: match id_choice {
                            IdChoice::Small(id) if decodes => id,
                            _ => 0,
                        },
                        token: client.resume_token(),
                    };
                }
            }
            continue;
        }
        let (event, data) = match ask {
            Ask::Register => ("register", Some(json!({"uid": uid, "type": 1}))),
            Ask::Message => ("message", Some(json!(n))),
            Ask::SyncTo => ("syncto", Some(json!(n))),
            Ask::IpAddr => ("ipaddr", None),
            Ask::IceServers => ("iceservers", None),
            // gRPC has no way to name an unknown event.
            Ask::UnknownEvent if door == Door::Grpc => {
                ("register", Some(json!({"uid": "", "type": 1})))
            }
            Ask::UnknownEvent => ("fly", Some(json!({}))),
            Ask::BadRegister => ("register", Some(json!({"uid": uid}))),
            Ask::BogusResume => ("resume", Some(json!({"token": "bogus", "last_seq": 0}))),
            Ask::DropAndResume => unreachable!("handled above"),
        };
        // Requests that reach the session (not refused while decoding)
        // record their client-chosen id; after a resume, one at or below
        // the highest is a re-send.
        let decodes =
            !matches!(ask, Ask::UnknownEvent | Ask::BadRegister) && id_decodes(door, id_choice);
        let chosen = match id_choice {
            IdChoice::Small(id) if decodes => Some(id),
            _ => None,
        };
        let resend = model.resumed && chosen.is_some_and(|id| id <= model.highest);
        if let Some(id) = chosen {
            model.highest = model.highest.max(id);
        }
        client
            .client
            .send(&with_id(event, data, raw_id))
            .await
            .expect("send");
        let answers = answers_to_this(&mut client).await;
        let what = format!("{door}: request {n} {ask:?} {id_choice:?}; answers {answers:?}");
        let refused = check_replies(&answers, door, id_choice, &what);
        if resend {
            assert_eq!(answers.len(), 1, "a re-send is acknowledged only: {what}");
            assert_eq!(answers[0]["event"], "ack", "{what}");
            continue;
        }
        if refused {
            continue;
        }
        // Not refused: it took effect.
        match ask {
            Ask::Message | Ask::SyncTo => took_effect.push(n),
            Ask::Register => {
                assert!(
                    answers.iter().any(|event| event["event"] == "registered"),
                    "{what}"
                );
                model.registered = true;
            }
            Ask::IpAddr => assert!(
                answers.iter().any(|event| event["event"] == "ipaddr"),
                "{what}"
            ),
            // Only a registered (or resumed) session is answered a list.
            Ask::IceServers => assert!(
                model.registered && answers.iter().any(|event| event["event"] == "iceservers"),
                "{what}"
            ),
            Ask::UnknownEvent | Ask::BadRegister | Ask::BogusResume | Ask::DropAndResume => {
                panic!("a bad request went unrefused: {what}")
            }
        }
    }
    // The peer received exactly the relays that took effect, in order.
    let received: Vec<u64> = answers_to_this(&mut peer)
        .await
        .iter()
        .filter(|event| event["event"] == "message" || event["event"] == "syncto")
        .map(|event| event["data"].as_u64().expect("a number"))
        .collect();
    assert_eq!(received, took_effect, "{door}: {requests:?}");
    client.close().await;
    peer.close().await;
}

/// At most one `ack`/`error`, exactly one when the request carried an id
/// the door reads, naming that id. Returns whether it was refused.
fn check_replies(answers: &[Value], door: Door, id_choice: IdChoice, what: &str) -> bool {
    let replies: Vec<&Value> = answers
        .iter()
        .filter(|event| event["event"] == "ack" || event["event"] == "error")
        .collect();
    assert!(replies.len() <= 1, "answered more than once: {what}");
    if let Some(id) = carries_id(door, id_choice) {
        assert_eq!(replies.len(), 1, "an id must be answered: {what}");
        assert_eq!(replies[0]["id"], id, "{what}");
    }
    match replies.iter().find(|event| event["event"] == "error") {
        Some(error) => {
            let named = error.get("id").and_then(Value::as_u64);
            assert!(
                named.is_none() || named == carries_id(door, id_choice),
                "{what}"
            );
            true
        }
        None => false,
    }
}

/// Sends a sentinel and returns what arrived before its answer: the
/// answers to the request sent before it (and, on the peer, what it was
/// relayed).
async fn answers_to_this(client: &mut TestClient) -> Vec<Value> {
    let sentinel = SENTINEL.fetch_add(1, Ordering::Relaxed);
    send_sentinel(client, sentinel).await;
    read_until_sentinel(client, sentinel).await
}

async fn send_sentinel(client: &mut TestClient, sentinel: u64) {
    client
        .send(
            "register",
            Some(json!({"uid": "", "type": 1})),
            Some(sentinel),
        )
        .await;
}

fn with_id(event: &str, data: Option<Value>, id: Option<u64>) -> Value {
    signalgate_client::envelope(event, data, id)
}

/// Events up to (not including) the sentinel's `error`.
async fn read_until_sentinel(client: &mut TestClient, sentinel: u64) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let event = client.next_event().await;
        if event["event"] == "error" && event["id"] == sentinel {
            assert_eq!(event["data"]["code"], "BAD_REQUEST", "{event}");
            return events;
        }
        events.push(event);
    }
}

/// A runtime for the cases and a gateway on it. A short resume window:
/// sessions a case leaves away (a resume refused for its id 0) are gone by
/// the final check.
fn runtime_and_gateway() -> (tokio::runtime::Runtime, TestGateway) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let gateway = runtime.block_on(TestGateway::start_with(signalgate::Config {
        resume_window: std::time::Duration::from_secs(2),
        ..common::test_config()
    }));
    (runtime, gateway)
}

#[test]
fn every_request_is_answered_exactly_once_on_every_door() {
    let (runtime, gateway) = runtime_and_gateway();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let strategy = (
        prop::sample::select(Door::ALL.to_vec()),
        prop::collection::vec(request(), 1..12),
    );
    let outcome = runner.run(&strategy, |(door, requests)| {
        runtime.block_on(run_case(&gateway, door, requests));
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    runtime.block_on(gateway.assert_empty());
}

/// A case the property test once found (shrunk): a `resume` that fails
/// leaves a fresh session that has seen its id, so after that session is
/// itself resumed, a request reusing the id is a re-send (`ack` only).
#[test]
fn a_failed_resume_s_id_counts_as_seen_once_resumed() {
    let (runtime, gateway) = runtime_and_gateway();
    let requests = vec![
        (Ask::Register, IdChoice::Zero),
        (Ask::DropAndResume, IdChoice::Small(1)),
        (Ask::Register, IdChoice::None),
        (Ask::Register, IdChoice::None),
        (Ask::DropAndResume, IdChoice::None),
        (Ask::Register, IdChoice::Small(1)),
    ];
    runtime.block_on(run_case(&gateway, Door::Ws, requests));
    runtime.block_on(gateway.assert_empty());
}

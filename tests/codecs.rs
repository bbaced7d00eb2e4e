//! One rendering of every event: each `Event` variant, rendered by the JSON
//! doors (`protocol::envelope`) and by the gRPC door (`protocol::grpc`,
//! its bytes read back as a gRPC client reads them), is the same envelope. The variant
//! list has no wildcard, so a new event does not compile until it is
//! listed, and the test fails until it has a sample. (The cluster's
//! hand-over round trip of the same variants is a unit test beside its
//! codec: `every_kept_event_survives_a_hand_over`.)

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde_json::{Value, json};
use signalgate::core::{
    ErrorCode, Event, FileOffer, IceGrant, IceServer, JsonPayload, Relay, Role, SessionId,
    TurnCredentials, Uid,
};

/// The position of `event`'s variant among all of them.
fn variant(event: &Event) -> usize {
    match event {
        Event::Welcome { .. } => 0,
        Event::Resumed { .. } => 1,
        Event::PeerAway => 2,
        Event::PeerBack => 3,
        Event::Registered { .. } => 4,
        Event::IceServers(_) => 5,
        Event::SyncFrom => 6,
        Event::Relayed(_) => 7,
        Event::IpAddrs(_) => 8,
        Event::ByeBye => 9,
        Event::Notice(_) => 10,
        Event::Reconnect { .. } => 11,
        Event::Ack { .. } => 12,
        Event::Error { .. } => 13,
    }
}

fn samples() -> Vec<Event> {
    let grant = Arc::new(IceGrant {
        servers: vec![
            IceServer {
                urls: vec!["turn:t:3478".into()],
                credentials: Some(TurnCredentials {
                    username: "1700000000:u".into(),
                    credential: "c2VjcmV0".into(),
                }),
            },
            IceServer {
                urls: vec!["stun:t:3478".into()],
                credentials: None,
            },
        ],
        expire_at: Some(1_700_000_000),
    });
    let payload = |value: Value| JsonPayload::from_value(&value).expect("payload");
    let uid = Uid::new("codec").expect("uid");
    vec![
        Event::Welcome {
            session_id: SessionId::random(),
            resume_token: Some(Arc::from("node.token")),
        },
        Event::Resumed {
            session_id: SessionId::random(),
            uid: uid.clone(),
            role: Role::App,
            resume_token: Arc::from("node.token2"),
            replayed: 2,
            ice_servers: Some(Arc::clone(&grant)),
        },
        Event::PeerAway,
        Event::PeerBack,
        Event::Registered {
            uid: uid.clone(),
            role: Role::Web,
            peer_present: true,
            ice_servers: None,
        },
        Event::IceServers(grant),
        Event::SyncFrom,
        Event::Relayed(Relay::Message(payload(
            json!({"sdp": "v=0", "n": [1, 2.5, null]}),
        ))),
        Event::Relayed(Relay::SyncTo(payload(json!("text")))),
        Event::Relayed(Relay::Export(payload(json!(7)))),
        Event::Relayed(Relay::Exception(payload(json!({"e": true})))),
        Event::Relayed(Relay::Transfile(FileOffer {
            size: 1024,
            name: "a.bin".into(),
        })),
        Event::Relayed(Relay::CtrlSendSpeed(65536)),
        Event::IpAddrs(vec![Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)].into()),
        Event::ByeBye,
        Event::Notice(payload(json!({"ring": [1, "x"]}))),
        Event::Reconnect {
            resume_token: Arc::from("node.token3"),
            after_ms: 250,
        },
        Event::Ack { id: 9 },
        Event::Error {
            code: ErrorCode::NoPeer,
            message: Cow::Borrowed("the peer is not connected"),
            id: Some(4),
        },
        Event::Error {
            code: ErrorCode::Kicked,
            message: Cow::Borrowed("abuse"),
            id: None,
        },
    ]
}

#[test]
fn every_event_renders_the_same_on_the_json_and_grpc_doors() {
    let samples = samples();
    let covered: BTreeSet<usize> = samples.iter().map(variant).collect();
    assert_eq!(covered.len(), 14, "a sample of every variant");
    for event in &samples {
        let seq = event.is_sequenced().then_some(5);
        let json: Value =
            serde_json::from_str(&signalgate::protocol::envelope::encode_event(event, seq))
                .expect("JSON");
        // The bytes on the wire, read as a client's generated type reads them.
        let bytes =
            prost::Message::encode_to_vec(&signalgate::protocol::grpc::encode_event(event, seq));
        let received: signalgate::proto::v1::ServerEvent =
            prost::Message::decode(bytes.as_slice()).expect("a ServerEvent");
        let grpc = signalgate_client::server_event_to_envelope(received);
        assert_eq!(json, grpc, "{event:?}");
    }
}

use std::borrow::Cow;
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::*;
use crate::core::{IceGrant, IceServer, JsonPayload, Relay, TurnCredentials};

#[test]
fn peer_events_round_trip() {
    let payload = JsonPayload::from_value(&serde_json::json!({"sdp": "v=0", "n": [1, 2.5]}))
        .expect("payload");
    for event in [
        Event::ByeBye,
        Event::SyncFrom,
        Event::PeerAway,
        Event::PeerBack,
        Event::Relayed(Relay::Message(payload.clone())),
        Event::Relayed(Relay::SyncTo(payload)),
        Event::Relayed(Relay::CtrlSendSpeed(65536)),
    ] {
        let (name, data) = encode_event(&event).expect("encodes");
        let to = target();
        let frame = Frame::Deliver {
            to: to.clone(),
            event: name,
            data,
            asker: Some(Asker {
                node: "0123456789abcdef".into(),
                token: 7,
            }),
        };
        let text = frame.encode().expect("serializes");
        let Frame::Deliver {
            to: back_to,
            event: name,
            data,
            asker,
        } = Frame::decode(text.as_bytes()).expect("parses")
        else {
            panic!("not a deliver: {text}");
        };
        assert_eq!(back_to, to);
        assert_eq!(asker.map(|asker| asker.token), Some(7));
        let decoded = decode_event(&name, data.as_deref()).expect("decodes");
        assert_eq!(decoded, event);
    }
}

#[test]
fn handed_over_sessions_round_trip() {
    let payload =
        JsonPayload::from_value(&serde_json::json!({"candidate": "a", "n": 1.5})).expect("payload");
    let uid = Uid::new("ünï").expect("uid");
    let export = SessionExport {
        session_id: SessionId::random(),
        uid: uid.clone(),
        role: Role::Web,
        last_seq: 9,
        acknowledged: 2,
        missed: vec![
            (
                2,
                Event::Notice(
                    JsonPayload::from_value(&serde_json::json!({"ring": [1, "x"]}))
                        .expect("payload"),
                ),
            ),
            (
                3,
                Event::Registered {
                    uid,
                    role: Role::Web,
                    peer_present: true,
                    ice_servers: Some(Arc::new(IceGrant {
                        servers: vec![
                            IceServer {
                                urls: vec!["turn:t:3478".into(), "turns:t:5349".into()],
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
                    })),
                },
            ),
            (4, Event::SyncFrom),
            (5, Event::Relayed(Relay::Message(payload))),
            (6, Event::Ack { id: 17 }),
            (
                7,
                Event::Error {
                    code: ErrorCode::NoPeer,
                    message: Cow::Owned("gone".into()),
                    id: Some(18),
                },
            ),
            (8, Event::IpAddrs(vec![Ipv4Addr::new(192, 0, 2, 1)].into())),
            (9, Event::PeerAway),
            (
                10,
                Event::IceServers(Arc::new(IceGrant {
                    servers: vec![IceServer {
                        urls: vec!["stun:t:3478".into()],
                        credentials: None,
                    }],
                    expire_at: None,
                })),
            ),
        ],
        highest_request_id: 18,
        was_away: true,
    };
    let wire = encode_export(&export).expect("encodes");
    let frame = Frame::Reply {
        token: 3,
        answer: Answer::Exported(wire),
    };
    let text = frame.encode().expect("serializes");
    let Frame::Reply {
        token: 3,
        answer: Answer::Exported(wire),
    } = Frame::decode(text.as_bytes()).expect("parses")
    else {
        panic!("not an exported reply: {text}");
    };
    assert_eq!(decode_export(&wire).expect("decodes"), export);
}

fn target() -> Target {
    Target {
        uid: Uid::new("u").expect("uid"),
        role: Role::App,
        session: SessionId::random(),
    }
}

/// The shapes the Lua scripts publish (`cjson.encode` of a flat table).
#[test]
fn frames_the_scripts_publish_are_read() {
    let session = SessionId::random();
    let byebye = format!(
        r#"{{"t":"deliver","uid":"ü","role":"web","session":"{session}","event":"byebye"}}"#
    );
    let Frame::Deliver {
        to, event, asker, ..
    } = Frame::decode(byebye.as_bytes()).expect("deliver")
    else {
        panic!("a deliver");
    };
    assert_eq!(
        (to.role, to.session, event.as_str()),
        (Role::Web, session, "byebye")
    );
    assert!(asker.is_none());
    let kill =
        format!(r#"{{"code":"REPLACED","role":"app","session":"{session}","t":"kill","uid":"u"}}"#);
    assert!(matches!(
        Frame::decode(kill.as_bytes()),
        Ok(Frame::Kill {
            code: ErrorCode::Replaced,
            ..
        })
    ));
}

#[test]
fn call_reports_round_trip_and_are_checked_again() {
    let report = CallReport::check(crate::core::CallReportFields {
        call: Some("attempt-1".into()),
        result: Some("failed".into()),
        setup_ms: Some(crate::core::Millis::Whole(12_000)),
        reason: Some("ICE failed".into()),
        ..Default::default()
    })
    .expect("valid");
    let to = Target {
        role: Role::Web,
        ..target()
    };
    let text = Frame::Call {
        to: to.clone(),
        door: DoorKind::Grpc,
        report: report.clone(),
    }
    .encode()
    .expect("encodes");
    let Ok(Frame::Call {
        to: read_to,
        door,
        report: read,
    }) = Frame::decode(text.as_bytes())
    else {
        panic!("a call frame: {text}");
    };
    assert_eq!((read_to, door, read), (to, DoorKind::Grpc, report));
    // A report that breaks the rules is refused as malformed, as are an
    // unknown door and a call frame without its report.
    let session = SessionId::random();
    for text in [
        format!(
            r#"{{"t":"call","uid":"u","role":"web","session":"{session}","call":{{"door":"ws","call":"c","result":"connected"}}}}"#
        ),
        format!(
            r#"{{"t":"call","uid":"u","role":"web","session":"{session}","call":{{"door":"fax","call":"c","result":"failed"}}}}"#
        ),
        format!(r#"{{"t":"call","uid":"u","role":"web","session":"{session}"}}"#),
    ] {
        assert!(Frame::decode(text.as_bytes()).is_err(), "{text}");
    }
}

#[test]
fn malformed_frames_are_refused() {
    for text in [
        r#"{"t":"deliver","uid":"u","role":"app"}"#,
        r#"{"t":"kill","uid":"u","role":"admin","session":"0123456789abcdef"}"#,
        r#"{"t":"take","resume_token":"x"}"#,
        r#"{"t":"reply"}"#,
        r#"{"t":"dance"}"#,
        "not json",
    ] {
        assert!(Frame::decode(text.as_bytes()).is_err(), "{text}");
    }
}

#[test]
fn take_adopted_and_replies_round_trip() {
    let take = Frame::Take {
        resume_token: "node.secret".into(),
        last_seq: 4,
        identity: Some(Identity {
            subject: "u".into(),
            role: Some(Role::Web),
        }),
        asker: Asker {
            node: "0123456789abcdef".into(),
            token: 9,
        },
    };
    let text = take.encode().expect("encodes");
    let Frame::Take {
        resume_token,
        last_seq: 4,
        identity: Some(identity),
        asker,
    } = Frame::decode(text.as_bytes()).expect("decodes")
    else {
        panic!("{text}");
    };
    assert_eq!(resume_token, "node.secret");
    assert_eq!(
        (identity.subject.as_str(), identity.role),
        ("u", Some(Role::Web))
    );
    assert_eq!(asker.token, 9);
    let session = SessionId::random();
    for bound in [true, false] {
        let text = Frame::Adopted { session, bound }.encode().expect("encodes");
        assert!(matches!(
            Frame::decode(text.as_bytes()),
            Ok(Frame::Adopted { session: s, bound: b }) if s == session && b == bound
        ));
    }
    let refused = Frame::Reply {
        token: 1,
        answer: Answer::Refused(Rejection::new(ErrorCode::Forbidden, "not yours")),
    };
    let text = refused.encode().expect("encodes");
    let Ok(Frame::Reply {
        answer: Answer::Refused(rejection),
        ..
    }) = Frame::decode(text.as_bytes())
    else {
        panic!("{text}");
    };
    assert_eq!(rejection.code, ErrorCode::Forbidden);
}

#[test]
fn session_events_do_not_cross() {
    assert!(encode_event(&Event::Ack { id: 1 }).is_err());
    assert!(decode_event("register", None).is_err());
}

#[test]
fn outcomes_round_trip() {
    for outcome in [
        Ok(()),
        Err(DeliveryError::SlowConsumer),
        Err(DeliveryError::Gone),
        Err(DeliveryError::Unreachable),
    ] {
        assert_eq!(
            decode_outcome(encode_outcome(outcome)).expect("known"),
            outcome
        );
    }
}

/// An unknown role, code or outcome in a frame is an error (the frame is
/// dropped and counted), never read as some default.
#[test]
fn unknown_values_in_frames_are_errors() {
    assert!(decode_outcome("lost in space").is_err());
    for frame in [
        r#"{"t":"kill","uid":"u","role":"web","session":"00000000000000aa","code":"NOT_A_CODE"}"#,
        r#"{"t":"kill","uid":"u","role":"phone","session":"00000000000000aa"}"#,
        r#"{"t":"take","reply_node":"n","token":1,"subject":"s","role_limit":"phone"}"#,
        r#"{"t":"adopted","session":"00000000000000aa","outcome":"maybe"}"#,
        r#"{"t":"reply","token":1,"outcome":"teleported"}"#,
        r#"{"t":"reply","token":1}"#,
        r#"{"t":"reply","token":1,"outcome":"refused","code":"NOT_A_CODE"}"#,
    ] {
        assert!(Frame::decode(frame.as_bytes()).is_err(), "{frame}");
    }
    // The same frames with known values are read.
    for frame in [
        r#"{"t":"kill","uid":"u","role":"web","session":"00000000000000aa","code":"KICKED"}"#,
        r#"{"t":"kill","uid":"u","role":"web","session":"00000000000000aa"}"#,
        r#"{"t":"take","reply_node":"n","token":1,"subject":"s","role_limit":"app"}"#,
        r#"{"t":"adopted","session":"00000000000000aa","outcome":"lost"}"#,
        r#"{"t":"reply","token":1,"outcome":"gone"}"#,
        r#"{"t":"reply","token":1,"outcome":"refused","code":"RESUME_FAILED"}"#,
    ] {
        assert!(Frame::decode(frame.as_bytes()).is_ok(), "{frame}");
    }
}

#[test]
fn admin_queries_and_answers_round_trip() {
    use crate::core::DoorKind;
    use crate::core::admin::{
        DoorCounts, NodeAnswer, NodeQuery, NodeStats, PushOutcome, SessionFilter, SessionInfo,
        SessionState,
    };
    let uid = Uid::new("ünï:1").expect("uid");
    let data = JsonPayload::from_value(&serde_json::json!({"call": "incoming", "n": [1, 2.5]}))
        .expect("payload");
    let queries = [
        NodeQuery::Sessions(SessionFilter {
            uid_prefix: "ün".into(),
            exact: false,
            after: Some((uid.clone(), Role::App)),
            limit: 7,
        }),
        NodeQuery::Kick {
            uid: uid.clone(),
            role: None,
            reason: "abuse".into(),
        },
        NodeQuery::Push {
            uid: uid.clone(),
            role: Role::Web,
            data,
        },
        NodeQuery::Stats,
    ];
    for query in queries {
        let frame = Frame::Query {
            query: query.clone(),
            asker: Asker {
                node: "0123456789abcdef".into(),
                token: 9,
            },
        };
        let text = frame.encode().expect("serializes");
        let Frame::Query { query: back, asker } = Frame::decode(text.as_bytes()).expect("parses")
        else {
            panic!("not a query: {text}");
        };
        assert_eq!(back, query);
        assert_eq!(asker.token, 9);
    }
    // Times travel with millisecond precision.
    let since = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_764_000_000_123);
    let answers = [
        NodeAnswer::Sessions(vec![
            SessionInfo {
                session: SessionId::random(),
                uid: uid.clone(),
                role: Role::App,
                door: Some(DoorKind::SocketIo),
                state: SessionState::Online,
                node: "0123456789abcdef".into(),
                since,
                remote_addr: Some("127.0.0.1:40000".parse().expect("address")),
            },
            SessionInfo {
                session: SessionId::random(),
                uid,
                role: Role::Web,
                door: None,
                state: SessionState::Away,
                node: "0123456789abcdef".into(),
                since,
                remote_addr: None,
            },
        ]),
        NodeAnswer::Kicked(2),
        NodeAnswer::Pushed(PushOutcome::Held),
        NodeAnswer::Stats(NodeStats {
            node: "fedcba9876543210".into(),
            sessions: DoorCounts {
                ws: 1,
                grpc: 2,
                socketio: 3,
            },
            away: 4,
            pairs: 5,
            relays_per_s: 6.5,
            // Codes travel by name, in name order.
            errors_per_s: vec![(ErrorCode::Kicked, 1.0), (ErrorCode::NoPeer, 0.5)],
            uptime_s: 7,
        }),
    ];
    for answer in answers {
        let frame = Frame::Reply {
            token: 3,
            answer: Answer::Queried(answer.clone()),
        };
        let text = frame.encode().expect("serializes");
        let Frame::Reply {
            token: 3,
            answer: Answer::Queried(back),
        } = Frame::decode(text.as_bytes()).expect("parses")
        else {
            panic!("not a query's reply: {text}");
        };
        assert_eq!(back, answer);
    }
}

/// The position of `event`'s variant among all of them. No wildcard: a new
/// event does not compile until it is listed here, and then
/// `every_kept_event_survives_a_hand_over` fails until it has a sample.
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

/// One event of every variant: those a session keeps for a resume cross
/// to another node in a hand-over and come back equal; the others
/// (a connection's greetings, the drain's `reconnect`) are never kept.
#[test]
fn every_kept_event_survives_a_hand_over() {
    let grant = Arc::new(IceGrant {
        servers: vec![IceServer {
            urls: vec!["turn:t:3478".into()],
            credentials: Some(TurnCredentials {
                username: "1700000000:hex.612062".into(),
                credential: "c2VjcmV0".into(),
            }),
        }],
        expire_at: Some(1_700_000_000),
    });
    let uid = Uid::new("every").expect("uid");
    let samples = [
        Event::Welcome {
            session_id: SessionId::random(),
            resume_token: Some(Arc::from("t")),
        },
        Event::Resumed {
            session_id: SessionId::random(),
            uid: uid.clone(),
            role: Role::App,
            resume_token: Arc::from("t"),
            replayed: 1,
            ice_servers: None,
        },
        Event::PeerAway,
        Event::PeerBack,
        Event::Registered {
            uid,
            role: Role::App,
            peer_present: false,
            ice_servers: Some(Arc::clone(&grant)),
        },
        Event::IceServers(grant),
        Event::SyncFrom,
        Event::Relayed(Relay::Exception(
            JsonPayload::from_value(&serde_json::json!("boom")).expect("payload"),
        )),
        Event::IpAddrs(vec![Ipv4Addr::new(192, 0, 2, 7)].into()),
        Event::ByeBye,
        Event::Notice(JsonPayload::from_value(&serde_json::json!({"n": 1})).expect("payload")),
        Event::Reconnect {
            resume_token: Arc::from("t"),
            after_ms: 10,
        },
        Event::Ack { id: 3 },
        Event::Error {
            code: ErrorCode::WrongRole,
            message: Cow::Borrowed("web may not syncto"),
            id: None,
        },
    ];
    let covered: std::collections::BTreeSet<usize> = samples.iter().map(variant).collect();
    assert_eq!(covered.len(), 14, "a sample of every variant");
    let kept: Vec<(u64, Event)> = samples
        .into_iter()
        .filter(Event::is_sequenced)
        .zip(1..)
        .map(|(event, seq)| (seq, event))
        .collect();
    assert_eq!(kept.len(), 11);
    let export = SessionExport {
        session_id: SessionId::random(),
        uid: Uid::new("every").expect("uid"),
        role: Role::App,
        last_seq: 11,
        acknowledged: 0,
        missed: kept,
        highest_request_id: 3,
        was_away: false,
    };
    let text = Frame::Reply {
        token: 1,
        answer: Answer::Exported(encode_export(&export).expect("encodes")),
    }
    .encode()
    .expect("serializes");
    let Frame::Reply {
        answer: Answer::Exported(wire),
        ..
    } = Frame::decode(text.as_bytes()).expect("parses")
    else {
        panic!("not an exported reply: {text}");
    };
    assert_eq!(decode_export(&wire).expect("decodes"), export);
}

#[test]
fn probes_round_trip_with_their_token() {
    let text = Frame::Probe { token: 7 }.encode().expect("serializes");
    assert_eq!(text, r#"{"t":"probe","token":7}"#);
    assert!(matches!(
        Frame::decode(text.as_bytes()),
        Ok(Frame::Probe { token: 7 })
    ));
    assert!(Frame::decode(br#"{"t":"probe"}"#).is_err());
}

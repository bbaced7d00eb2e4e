use super::*;
use crate::core::ErrorCode;
use proptest::prelude::*;

/// What serde reads from a frame, as text.
fn read_by_serde(text: &str) -> Option<(Option<String>, Option<String>, Option<String>)> {
    let envelope: IncomingEnvelope<'_> = serde_json::from_str(text).ok()?;
    Some((
        envelope.event.map(Cow::into_owned),
        envelope.data.map(|raw| raw.get().to_owned()),
        envelope.id.map(|raw| raw.get().to_owned()),
    ))
}

fn read_by_scanner(text: &str) -> Option<(Option<String>, Option<String>, Option<String>)> {
    let envelope = plain_envelope(text)?;
    Some((
        envelope.event.map(str::to_owned),
        envelope.data.map(|data| data.text().to_owned()),
        envelope.id.map(str::to_owned),
    ))
}

/// Frames as clients write them, and with one byte changed, added or
/// removed.
fn frames() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        Just(r#""event":"message""#.to_owned()),
        Just(r#""event":null"#.to_owned()),
        Just(r#""event":"m\u0065""#.to_owned()),
        Just(r#""event":3"#.to_owned()),
        Just(r#""data":{"sdp":"v=0\r\n","n":[1,-2.5e3,true,null]}"#.to_owned()),
        Just(r#""data" : [ "a" , { } ] "#.to_owned()),
        Just(r#""data":null"#.to_owned()),
        Just(r#""data":"\u00e9""#.to_owned()),
        Just(r#""id":7"#.to_owned()),
        Just(r#""id":null"#.to_owned()),
        Just(r#""id":-1.5"#.to_owned()),
        Just(r#""other":[[{"x":1}]]"#.to_owned()),
        Just(r#""\u0069d":7"#.to_owned()),
    ];
    (
        prop::collection::vec(field, 0..5),
        prop::option::of((
            any::<prop::sample::Index>(),
            0..3u8,
            prop::sample::select(b" {}[]:,\"\\nul0-ex".to_vec()),
        )),
    )
        .prop_map(|(fields, edit)| {
            let mut bytes = format!("{{{}}}", fields.join(",")).into_bytes();
            if let Some((at, kind, byte)) = edit {
                let at = at.index(bytes.len() + 1);
                match kind {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => {}
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// The one-pass envelope reader reads exactly what serde reads, or
    /// leaves the frame to serde.
    #[test]
    fn the_plain_envelope_reads_what_serde_reads(text in frames()) {
        if let Some(read) = read_by_scanner(&text) {
            prop_assert_eq!(Some(read), read_by_serde(&text), "{}", text);
        }
    }
}

#[test]
fn frames_clients_write_take_the_plain_path() {
    for text in [
        r#"{"event":"message","data":{"t":1,"p":"xx"}}"#,
        r#" { "event" : "register" , "data" : {"uid":"u","type":0}, "id" : 3 } "#,
        r#"{"data":[1,2],"event":"syncto","extra":{"a":[null]}}"#,
        r#"{"event":"ipaddr","data":null,"id":null}"#,
        "{}",
    ] {
        assert!(read_by_scanner(text).is_some(), "{text}");
        assert_eq!(read_by_scanner(text), read_by_serde(text), "{text}");
    }
    for text in [
        r#"{"event":"message","event":"message"}"#,
        r#"{"ev\u0065nt":"message"}"#,
        r#"{"event":"m\u0065"}"#,
        r#"{"event":"message",}"#,
        r#"{"event":"message"} x"#,
    ] {
        assert!(read_by_scanner(text).is_none(), "{text}");
    }
}

#[test]
fn resume_accepts_both_spellings_of_last_seq() {
    for text in [
        r#"{"event":"resume","data":{"token":"t","last_seq":4}}"#,
        r#"{"event":"resume","data":{"token":"t","lastSeq":4}}"#,
    ] {
        let request = decode_frame(text).expect("decodes");
        assert_eq!(
            request.command,
            Command::Resume {
                token: "t".into(),
                last_seq: 4
            }
        );
    }
}

#[test]
fn relayed_envelopes_match_what_serde_writes() {
    for text in [
        r#"{"sdp":"v=0\r\n","n":[1,2.5,null,true]}"#,
        r#""\u00e9""#,
        "0",
        "[]",
    ] {
        let raw = RawValue::from_string(text.to_owned()).expect("json");
        let payload = JsonPayload::from_raw(&raw).expect("payload");
        for relay in [
            Relay::SyncTo(payload.clone()),
            Relay::Message(payload.clone()),
            Relay::Export(payload.clone()),
            Relay::Exception(payload.clone()),
        ] {
            let event = Event::Relayed(relay);
            for seq in [None, Some(1), Some(u64::MAX)] {
                let by_serde = serde_json::to_string(&OutgoingEnvelope {
                    event: event.name(),
                    data: event_data(&event),
                    id: event_request_id(&event),
                    seq,
                })
                .expect("serializes");
                assert_eq!(encode_event(&event, seq), by_serde);
            }
        }
    }
}

#[test]
fn sequenced_events_carry_seq() {
    assert_eq!(
        encode_event(&Event::PeerAway, Some(7)),
        r#"{"event":"peer_away","seq":7}"#
    );
}

#[test]
fn register_accepts_seed_and_named_types() {
    for (text, role) in [
        (
            r#"{"event":"register","data":{"uid":"u","type":0}}"#,
            Role::Web,
        ),
        (
            r#"{"event":"register","data":{"uid":"u","type":"app"}}"#,
            Role::App,
        ),
    ] {
        let request = decode_frame(text).expect("decodes");
        assert_eq!(
            request.command,
            Command::Register {
                uid: Uid::new("u").expect("uid"),
                role
            }
        );
    }
}

#[test]
fn frames_are_objects_and_numbers_fit_a_double() {
    // Found by the json_frame fuzz target: an array was read as an
    // envelope, and a 400-digit number reached a gRPC peer as null.
    assert!(decode_frame(r#"["syncto", [1]]"#).is_err());
    let huge = format!(r#"{{"event":"message","data":[{}]}}"#, "3".repeat(400));
    let failure = decode_frame(&huge).expect_err("refused");
    assert_eq!(failure.rejection.code, ErrorCode::BadRequest);
}

#[test]
fn bad_id_is_rejected_without_echo() {
    let failure = decode_frame(r#"{"event":"ipaddr","id":-3}"#).expect_err("rejects");
    assert_eq!(failure.id, None);
    assert_eq!(failure.rejection.code, ErrorCode::BadRequest);
}

#[test]
fn unknown_event_keeps_the_id() {
    let failure = decode_frame(r#"{"event":"nope","id":9}"#).expect_err("rejects");
    assert_eq!(failure.id, Some(9));
}

#[test]
fn relayed_data_passes_through_untouched() {
    let text = r#"{"event":"message","data":{"b":[1,2.5,"é"],"a":null}}"#;
    let request = decode_frame(text).expect("decodes");
    let Command::Relay(relay) = request.command else {
        panic!("not a relay")
    };
    let rendered = encode_event(&Event::Relayed(relay), None);
    assert_eq!(
        rendered,
        r#"{"event":"message","data":{"b":[1,2.5,"é"],"a":null}}"#
    );
}

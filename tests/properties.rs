//! Property tests over the decoding paths: no input panics, and payloads
//! survive every conversion unchanged.

use proptest::prelude::*;
use prost::Message as _;
use serde_json::{Value, json};
use signalgate::core::payload::{MAX_PAYLOAD_DEPTH, ScanError, json_value_depth, scan_json};
use signalgate::core::{Command, JsonPayload, Relay};
use signalgate::proto::encoded::EncodedValue;
use signalgate::proto::json::{
    json_text_to_value, json_to_value, value_to_json, value_to_raw_json,
};
use signalgate::proto::server as wire;
use signalgate::proto::v1 as pb;
use signalgate::protocol::envelope::{decode_frame, encode_event};
use signalgate::protocol::grpc::decode_event;

/// `data` as compact or pretty-printed JSON text.
fn json_text(data: &Value, pretty: bool) -> String {
    if pretty {
        serde_json::to_string_pretty(data).expect("serializes")
    } else {
        data.to_string()
    }
}

/// JSON values as they travel: numbers are whole within ±2^53 or have a
/// fraction (a whole number written with a fraction comes back whole
/// through gRPC, as documented).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 53)..(1i64 << 53)).prop_map(|n| json!(n)),
        (-1.0e9f64..1.0e9)
            .prop_filter("has a fraction", |f| f.fract() != 0.0)
            .prop_map(|f| json!(f)),
        ".{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Whether serde_json writes a `\u` escape for some string of `value`: it
/// does for control characters without a short escape.
fn needs_unicode_escape(value: &Value) -> bool {
    let escaped = |text: &str| {
        text.chars()
            .any(|c| c < '\u{20}' && !matches!(c, '\u{8}' | '\u{c}' | '\n' | '\r' | '\t'))
    };
    match value {
        Value::String(text) => escaped(text),
        Value::Array(items) => items.iter().any(needs_unicode_escape),
        Value::Object(map) => map
            .iter()
            .any(|(key, item)| escaped(key) || needs_unicode_escape(item)),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The one-pass scan of relayed JSON text finds what a full parse finds:
    /// the depth, and whether a `\u` escape is present (strings full of
    /// quotes, backslashes and control characters included).
    #[test]
    fn scanning_json_text_agrees_with_parsing_it(
        value in json_value(),
        tricky in "[\"\\\\\\[\\]{}\\x00-\\x1f\\u{e9}a-c]{0,16}",
        pretty in any::<bool>(),
    ) {
        let value = json!([value, tricky]);
        let text = if pretty {
            serde_json::to_string_pretty(&value).expect("serializes")
        } else {
            serde_json::to_string(&value).expect("serializes")
        };
        let shape = scan_json(&text).expect("valid JSON").shape();
        prop_assert_eq!(shape.depth, json_value_depth(&value));
        prop_assert_eq!(shape.unicode_escapes, needs_unicode_escape(&value));
        prop_assert!(shape.numbers_finite);
    }

    /// The scanner and serde_json accept the same texts (up to the depth
    /// limit, where the scanner stops): valid JSON, and valid JSON with one
    /// byte replaced, inserted or removed.
    #[test]
    fn the_scanner_accepts_what_serde_json_accepts(
        value in json_value(),
        pretty in any::<bool>(),
        edit in prop::option::of((any::<prop::sample::Index>(), 0..3u8, prop::sample::select(
            b" \t\n\"\\/{}[]:,.-+eE0123456789abfnrtuxl\x00\x1f".to_vec()
        ))),
    ) {
        let mut bytes = json_text(&value, pretty).into_bytes();
        if let Some((at, kind, byte)) = edit {
            let at = at.index(bytes.len() + 1);
            match kind {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => { bytes.remove(at); }
                _ => {}
            }
        }
        let Ok(text) = String::from_utf8(bytes) else { return Ok(()) };
        let by_serde = serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok();
        match scan_json(&text) {
            Err(ScanError::TooDeep) => {}
            scanned => prop_assert_eq!(scanned.is_ok(), by_serde, "{:?}", text),
        }
    }

    #[test]
    fn any_text_frame_decodes_or_is_refused(text in ".{0,200}") {
        let _ = decode_frame(&text);
    }

    #[test]
    fn any_envelope_shaped_frame_decodes_or_is_refused(
        event in prop_oneof![
            Just("register".to_owned()),
            Just("message".to_owned()),
            Just("transfile".to_owned()),
            Just("ctrlSendSpeed".to_owned()),
            Just("resume".to_owned()),
            Just("ipaddr".to_owned()),
            Just("iceservers".to_owned()),
            ".{0,10}",
        ],
        data in json_value(),
        id in prop::option::of(any::<i64>()),
    ) {
        let mut frame = json!({"event": event, "data": data});
        if let Some(id) = id {
            frame["id"] = json!(id);
        }
        let _ = decode_frame(&frame.to_string());
    }

    #[test]
    fn relayed_json_arrives_unchanged_on_the_json_doors(data in json_value()) {
        let frame = json!({"event": "message", "data": data}).to_string();
        let request = decode_frame(&frame).expect("decodes");
        let Command::Relay(relay @ Relay::Message(_)) = request.command else {
            panic!("not a message");
        };
        let rendered = encode_event(&signalgate::core::Event::Relayed(relay), Some(1));
        let parsed: Value = serde_json::from_str(&rendered).expect("json");
        prop_assert_eq!(&parsed["data"], &data);
        prop_assert_eq!(&parsed["seq"], &json!(1));
    }

    #[test]
    fn json_survives_protobuf_and_back(data in json_value()) {
        let value = json_to_value(&data);
        let bytes = value.encode_to_vec();
        let decoded = prost_types::Value::decode(bytes.as_slice()).expect("decodes");
        prop_assert_eq!(value_to_json(&decoded).expect("finite"), data);
    }

    #[test]
    fn any_bytes_decode_as_a_client_event_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(event) = wire::ClientEvent::decode(bytes.as_slice()) {
            let _ = decode_event(event);
        }
    }

    /// The gRPC door's direct conversions (no `serde_json::Value` in
    /// between) give exactly what the tree conversions give.
    #[test]
    fn direct_conversions_agree_with_tree_conversions(data in json_value(), pretty in any::<bool>()) {
        let text = json_text(&data, pretty);
        let direct = json_text_to_value(&text).expect("valid JSON");
        prop_assert_eq!(&direct, &json_to_value(&data));
        let through_tree = serde_json::to_string(&value_to_json(&direct).expect("finite")).expect("serializes");
        let raw = value_to_raw_json(&direct).expect("finite");
        prop_assert_eq!(raw.get(), through_tree.as_str());
    }

    /// The gRPC server keeps values encoded and walks the bytes: for what
    /// prost writes, the walk alone gives exactly the tree conversion's text.
    #[test]
    fn the_encoded_walk_agrees_with_the_tree_conversion(data in json_value()) {
        let value = json_to_value(&data);
        let encoded = EncodedValue::from_bytes(value.encode_to_vec());
        let walked = encoded.canonical_to_json_text().expect("prost writes the canonical encoding");
        let through_tree = value_to_raw_json(&value).expect("finite");
        prop_assert_eq!(walked.as_str(), through_tree.get());
    }

    /// Whatever the bytes, the encoded value converts as decoding would.
    #[test]
    fn encoded_values_convert_as_decoded_ones(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let encoded = EncodedValue::from_bytes(bytes.clone());
        let through_tree = prost_types::Value::decode(bytes.as_slice())
            .ok()
            .and_then(|value| value_to_raw_json(&value).ok());
        let direct = encoded.to_json_text().ok();
        prop_assert_eq!(direct.as_deref(), through_tree.as_ref().map(|raw| raw.get()));
    }

    /// A relayed payload on its way to a gRPC client: the one-pass
    /// transcoder gives the value serde_json's parse gives.
    #[test]
    fn payloads_transcode_to_the_same_value(data in json_value(), pretty in any::<bool>()) {
        let text = json_text(&data, pretty);
        if let Ok(payload) = JsonPayload::from_text(text.clone()) {
            let encoded = EncodedValue::from_payload(&payload);
            let decoded = prost_types::Value::decode(encoded.as_bytes()).expect("decodes");
            prop_assert_eq!(decoded, json_text_to_value(&text).expect("valid JSON"));
        }
    }

    /// A protobuf value a gRPC client sends reaches every peer as the
    /// conversion to JSON and back would deliver it: JSON peers read the
    /// same text, gRPC peers get the same bytes, whether the gateway kept
    /// the value in its encoding or not; and it keeps exactly the values
    /// that conversion gives back unchanged.
    #[test]
    fn kept_protobuf_values_reach_peers_as_converted_ones(data in json_value(), noise in prop::collection::vec(any::<u8>(), 0..48)) {
        for bytes in [json_to_value(&data).encode_to_vec(), noise] {
            let sent = EncodedValue::from_bytes(bytes);
            let converted = sent
                .to_json_text()
                .ok()
                .and_then(|text| JsonPayload::from_text(text).ok());
            match (sent.clone().into_payload(), converted) {
                (Ok(relayed), Some(converted)) => {
                    prop_assert_eq!(relayed.as_str(), converted.as_str());
                    let again = EncodedValue::from_payload(&converted);
                    prop_assert_eq!(&EncodedValue::from_payload(&relayed), &again);
                    prop_assert_eq!(relayed.native::<EncodedValue>().is_some(), again == sent);
                }
                (Err(_), None) => {}
                (relayed, converted) => prop_assert!(false, "{relayed:?} vs {converted:?}"),
            }
        }
    }

    #[test]
    fn every_decodable_payload_fits_every_door(data in json_value()) {
        // What a JSON door accepts, gRPC can carry: the depth limit is below
        // what protobuf decoders allow.
        let frame = json!({"event": "export", "data": data}).to_string();
        if decode_frame(&frame).is_ok() {
            let event = pb::ServerEvent {
                seq: 1,
                event: Some(pb::server_event::Event::Export(json_to_value(&data))),
            };
            let bytes = event.encode_to_vec();
            prop_assert!(pb::ServerEvent::decode(bytes.as_slice()).is_ok());
        }
    }
}

#[test]
fn the_depth_limit_holds_at_its_edge_on_both_decoders() {
    let mut deep = json!(0);
    for _ in 0..MAX_PAYLOAD_DEPTH {
        deep = json!([deep]);
    }
    let accepted = json!({"event": "message", "data": deep}).to_string();
    assert!(decode_frame(&accepted).is_ok());
    let refused = json!({"event": "message", "data": [deep.clone()]}).to_string();
    assert!(decode_frame(&refused).is_err());
    // The same edge on gRPC, through a real protobuf decode.
    let event = pb::ClientEvent {
        id: 1,
        event: Some(pb::client_event::Event::Message(json_to_value(&deep))),
    };
    let decoded = wire::ClientEvent::decode(event.encode_to_vec().as_slice()).expect("protobuf");
    assert!(decode_event(decoded).is_ok());
    let event = pb::ClientEvent {
        id: 1,
        event: Some(pb::client_event::Event::Message(json_to_value(&json!([
            deep
        ])))),
    };
    let decoded = wire::ClientEvent::decode(event.encode_to_vec().as_slice()).expect("protobuf");
    assert!(decode_event(decoded).is_err());
}

#[test]
fn non_finite_numbers_have_no_json_text() {
    use prost_types::value::Kind;
    for n in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let number = prost_types::Value {
            kind: Some(Kind::NumberValue(n)),
        };
        let list = prost_types::Value {
            kind: Some(Kind::ListValue(prost_types::ListValue {
                values: vec![json_to_value(&json!(1)), number],
            })),
        };
        assert!(value_to_raw_json(&list).is_err(), "{n} has no JSON form");
    }
}

//! The encoded walks against the tree conversions.

use super::*;
use crate::proto::json::{json_text_to_value, json_to_value};
use prost::Message as _;
use serde_json::json;

fn encoded(json: &serde_json::Value) -> EncodedValue {
    EncodedValue::from_bytes(json_to_value(json).encode_to_vec())
}

#[test]
fn canonical_encodings_take_the_direct_walk() {
    let data = json!({"a": [1, 2.5, -3, true, null, "x\"y"], "b": {"": {}, "c": []}, "long": "z".repeat(300)});
    let value = encoded(&data);
    let direct = value.canonical_to_json_text().expect("canonical");
    let decoded = prost_types::Value::decode(value.as_bytes()).expect("decodes");
    assert_eq!(direct, value_to_raw_json(&decoded).expect("finite").get());
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&direct).expect("json"),
        data
    );
}

#[test]
fn other_encodings_fall_back_to_decoding() {
    // Two kinds in one value: the last wins.
    let two_kinds = [STRING_KEY, 1, b'a', BOOL_KEY, 1];
    let value = EncodedValue::from_bytes(two_kinds.to_vec());
    assert!(value.canonical_to_json_text().is_none());
    assert_eq!(value.to_json_text().expect("decodes"), "true");
    // Keys out of order are sorted, as the decoded map sorts them.
    let value = EncodedValue::from_payload(&payload(r#"{"b":1,"a":2}"#));
    assert!(value.canonical_to_json_text().is_none());
    assert_eq!(value.to_json_text().expect("decodes"), r#"{"a":2,"b":1}"#);
    // Broken bytes and invalid UTF-8.
    let truncated = EncodedValue::from_bytes(vec![STRING_KEY, 5, b'a']);
    assert_eq!(
        truncated.to_json_text().err(),
        Some(ValueError::Undecodable)
    );
    let not_utf8 = EncodedValue::from_bytes(vec![STRING_KEY, 1, 0xff]);
    assert_eq!(not_utf8.to_json_text().err(), Some(ValueError::Undecodable));
    let nan = EncodedValue::from_bytes(
        std::iter::once(NUMBER_KEY)
            .chain(f64::NAN.to_le_bytes())
            .collect(),
    );
    assert_eq!(nan.to_json_text().err(), Some(ValueError::NonFiniteNumber));
}

fn payload(text: &str) -> JsonPayload {
    JsonPayload::from_text(text.to_owned()).expect("a payload")
}

fn transcoded(text: &str) -> prost_types::Value {
    prost_types::Value::decode(EncodedValue::from_payload(&payload(text)).as_bytes())
        .expect("decodes")
}

#[test]
fn payloads_transcode_to_the_parsed_value() {
    for text in [
        "null",
        " [ ] ",
        "{ }",
        "true",
        r#"{"sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n","type":"offer"}"#,
        r#"["\"\\\/\b\f\n\r\t", "\u00e9\u4e2d\ud83d\ude00x", "é中😀"]"#,
        r#"{"b" : [1, -0, -0.0, 0.5, -2.5e-3, 1E2, 18446744073709551615, 18446744073709551616, -9223372036854775808, -18446744073709551615]}"#,
        "[\n\t{\"a\":{\"b\":{}},\"a\":[[],[null]]}\r\n]",
        r#"{"b":[1,{"c":"d"}],"a":null,"a":false}"#,
        &format!(r#"{{"k":"{}","n":[1e300,-0.5]}}"#, "x".repeat(200)),
    ] {
        let expected = json_text_to_value(text).expect("json");
        let got = transcoded(text);
        assert_eq!(got, expected, "{text}");
        // Negative zero keeps its sign, as serde_json reads it.
        if text.contains("-0,") {
            let Some(prost_types::value::Kind::StructValue(fields)) = got.kind else {
                panic!("an object");
            };
            let Some(prost_types::value::Kind::ListValue(list)) = fields.fields["b"].kind.clone()
            else {
                panic!("a list");
            };
            let Some(prost_types::value::Kind::NumberValue(zero)) = list.values[1].kind else {
                panic!("a number");
            };
            assert!(zero.is_sign_negative());
        }
    }
}

/// The bytes a gRPC peer gets for the value through its JSON text.
fn through_json(value: &EncodedValue) -> Option<EncodedValue> {
    let text = value.to_json_text().ok()?;
    let payload = JsonPayload::from_text(text).ok()?;
    Some(EncodedValue::from_payload(&payload))
}

#[test]
fn the_transcoded_form_is_kept_and_relayed_as_it_is() {
    for text in [
        "null",
        "[]",
        "{}",
        "false",
        r#"{"p":"xxxx","t":1764100000000}"#,
        r#"{"":[{"a":"\u0000\n\"é中😀"},0.5,-2,1e300,[[[]]]],"b":{"c":null}}"#,
        &format!(r#"{{"k":"{}","n":[1e300,-0.5]}}"#, "x".repeat(300)),
    ] {
        let sent = EncodedValue::from_payload(&payload(text));
        assert!(sent.is_transcoded_form(), "{text}");
        let relayed = sent.clone().into_payload().expect("a payload");
        assert_eq!(relayed.native::<EncodedValue>(), Some(&sent), "{text}");
        // A JSON peer reads the text the conversion gives, a gRPC peer
        // the bytes it gives: the ones that were sent.
        let converted = sent.to_json_text().expect("JSON text");
        assert_eq!(relayed.as_str(), converted, "{text}");
        assert_eq!(EncodedValue::from_payload(&relayed), sent, "{text}");
        assert_eq!(through_json(&sent), Some(sent.clone()), "{text}");
    }
}

#[test]
fn other_forms_take_the_conversion() {
    let number = |n: f64| {
        std::iter::once(NUMBER_KEY)
            .chain(n.to_le_bytes())
            .collect::<Vec<u8>>()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no kind set", vec![]),
        ("null written as 1", vec![NULL_KEY, 1]),
        ("true written as 2", vec![BOOL_KEY, 2]),
        ("negative zero", number(-0.0)),
        ("an overlong length", vec![STRING_KEY, 0x81, 0x00, b'a']),
        // prost leaves out an empty key and a value with no kind.
        (
            "an entry without its key",
            vec![STRUCT_KEY, 4, ENTRY_KEY, 2, ENTRY_VALUE_KEY, 0],
        ),
        (
            "keys out of order",
            EncodedValue::from_payload(&payload(r#"{"b":1,"a":2}"#)).bytes,
        ),
        (
            "a key twice",
            EncodedValue::from_payload(&payload(r#"{"a":1,"a":2}"#)).bytes,
        ),
        ("two kinds", vec![STRING_KEY, 1, b'a', BOOL_KEY, 1]),
    ];
    for (case, bytes) in cases {
        let sent = EncodedValue::from_bytes(bytes);
        assert!(!sent.is_transcoded_form(), "{case}");
        let relayed = sent.clone().into_payload().expect("a payload");
        assert!(relayed.native::<EncodedValue>().is_none(), "{case}");
        assert_eq!(
            Some(EncodedValue::from_payload(&relayed)),
            through_json(&sent),
            "{case}"
        );
    }
    // Refused as the conversion refuses them.
    assert!(matches!(
        EncodedValue::from_bytes(number(f64::NAN)).into_payload(),
        Err(PayloadError::Value(ValueError::NonFiniteNumber))
    ));
    assert!(matches!(
        EncodedValue::from_bytes(vec![STRING_KEY, 1, 0xff]).into_payload(),
        Err(PayloadError::Value(ValueError::Undecodable))
    ));
}

#[test]
fn the_depth_limit_holds_for_kept_values() {
    let nested =
        |depth: usize| {
            let text = "[".repeat(depth) + &"]".repeat(depth);
            EncodedValue::from_payload(&JsonPayload::from_text(text).unwrap_or_else(|_| {
                JsonPayload::from_value(&serde_json::Value::Null).expect("null")
            }))
        };
    assert!(nested(MAX_PAYLOAD_DEPTH).is_transcoded_form());
    // One level deeper: built by hand, as no valid payload is that deep.
    let inner = nested(MAX_PAYLOAD_DEPTH).bytes;
    let mut deeper = vec![LIST_KEY];
    let mut item = vec![ENTRY_KEY];
    encode_varint(inner.len() as u64, &mut item);
    item.extend_from_slice(&inner);
    encode_varint(item.len() as u64, &mut deeper);
    deeper.extend_from_slice(&item);
    let deeper = EncodedValue::from_bytes(deeper);
    assert!(!deeper.is_transcoded_form());
    assert!(matches!(
        deeper.into_payload(),
        Err(PayloadError::Refused(_))
    ));
}

#[test]
fn escape_detection_matches_a_byte_loop() {
    for byte in 0..=255u8 {
        for at in 0..20 {
            let mut bytes = vec![b'a'; 20];
            bytes[at] = byte;
            let naive = bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
            assert_eq!(
                crate::core::json_text::find_string_special(&bytes).is_some(),
                naive,
                "byte {byte} at {at}"
            );
        }
    }
}

#[test]
fn long_contents_widen_the_length_prefix() {
    for len in [126, 127, 128, 129, 16_383, 16_384, 70_000] {
        let text = serde_json::to_string(&json!([["x".repeat(len)]])).expect("json");
        assert_eq!(transcoded(&text), json_text_to_value(&text).expect("json"));
        // And the walks read every width of length back.
        let sent = EncodedValue::from_payload(&payload(&text));
        assert!(sent.is_transcoded_form(), "{len}");
        assert_eq!(
            sent.canonical_to_json_text().as_deref(),
            Some(text.as_str())
        );
    }
}

#[test]
fn decoding_keeps_known_fields_and_drops_unknown_ones() {
    // A ClientEvent-like wrapper: field 4 holds the value.
    let value = [
        (9 << 3) | 3,
        0x08,
        0x01,
        (9 << 3) | 4,
        (7 << 3),
        5,
        BOOL_KEY,
        1,
    ];
    let mut message = vec![(4 << 3) | 2, value.len() as u8];
    message.extend_from_slice(&value);
    let decoded = Wrapper::decode(message.as_slice()).expect("decodes");
    assert_eq!(
        decoded.value.as_ref().map(EncodedValue::as_bytes),
        Some(&[BOOL_KEY, 1][..])
    );
    // A known field with the wrong wire type is refused, as prost refuses it.
    let wrong = [(4 << 3) | 2, 2, (3 << 3), 1];
    assert!(Wrapper::decode(&wrong[..]).is_err());
    // A length beyond the message.
    let short = [(4 << 3) | 2, 3, STRING_KEY, 9, b'a'];
    assert!(Wrapper::decode(&short[..]).is_err());
}

#[derive(Clone, PartialEq, prost::Message)]
struct Wrapper {
    #[prost(message, optional, tag = "4")]
    value: Option<EncodedValue>,
}

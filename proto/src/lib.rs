//! The signalgate contract in Rust, for programs that speak to the gateway
//! (the Rust client, the load generator, native apps): the generated types
//! and tonic client of `proto/signalgate/v1/signaling.proto`, and the
//! conversions between `google.protobuf.Value` and JSON that a gRPC client
//! needs. The normative text is docs/PROTOCOL.md; the gateway itself uses
//! this crate's types and JSON rendering too.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// The contract's types and the tonic client (a `google.protobuf.Value` is
/// a `prost_types::Value`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("signalgate.v1");
}

/// Initial size of a stream's encode and decode buffers. tonic's default is
/// 8 KiB each, allocated for every open stream even when idle; signaling
/// messages are small, and a larger one grows the buffer as needed.
pub const CODEC_BUFFER_BYTES: usize = 1024;

/// The prost codec with [`CODEC_BUFFER_BYTES`] buffers, used by the
/// generated client here and by the gateway's generated server.
#[derive(Debug)]
pub struct CompactCodec<T, U>(std::marker::PhantomData<(T, U)>);

impl<T, U> Default for CompactCodec<T, U> {
    fn default() -> Self {
        CompactCodec(std::marker::PhantomData)
    }
}

impl<T, U> tonic::codec::Codec for CompactCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = tonic_prost::ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstCodec::<T, U>::raw_decoder(settings())
    }
}

fn settings() -> tonic::codec::BufferSettings {
    // Yield after 32 KiB of encoded output, tonic's default.
    tonic::codec::BufferSettings::new(CODEC_BUFFER_BYTES, 32 * 1024)
}

/// `google.protobuf.Value` ⇄ JSON.
pub mod json {
    use prost_types::{ListValue, Struct, Value, value::Kind};
    use serde_json::{Map, Number, Value as Json};

    /// Largest integer a double holds exactly (2^53).
    pub const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

    /// A `google.protobuf.Value` with no JSON form (NaN or an infinity).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
    #[error("numbers must be finite to travel as JSON")]
    pub struct NonFiniteNumber;

    /// Converts a protobuf value into JSON. An unset kind becomes `null`;
    /// whole numbers within ±2^53 become JSON integers.
    pub fn value_to_json(value: &Value) -> Result<Json, NonFiniteNumber> {
        Ok(match &value.kind {
            None | Some(Kind::NullValue(_)) => Json::Null,
            Some(Kind::BoolValue(b)) => Json::Bool(*b),
            Some(Kind::StringValue(s)) => Json::String(s.clone()),
            Some(Kind::NumberValue(n)) => number_to_json(*n)?,
            Some(Kind::ListValue(list)) => Json::Array(
                list.values
                    .iter()
                    .map(value_to_json)
                    .collect::<Result<_, _>>()?,
            ),
            Some(Kind::StructValue(object)) => Json::Object(
                object
                    .fields
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), value_to_json(v)?)))
                    .collect::<Result<Map<_, _>, _>>()?,
            ),
        })
    }

    fn number_to_json(n: f64) -> Result<Json, NonFiniteNumber> {
        if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
            // Exact: the value is a whole number within the safe range.
            return Ok(Json::Number(Number::from(n as i64)));
        }
        Number::from_f64(n).map(Json::Number).ok_or(NonFiniteNumber)
    }

    /// Writes a protobuf value as raw JSON directly, with no intermediate
    /// tree and no re-parse: the same text
    /// `serde_json::to_string(&value_to_json(value)?)` gives (keys in
    /// order, whole numbers within ±2^53 as integers).
    pub fn value_to_raw_json(
        value: &Value,
    ) -> Result<Box<serde_json::value::RawValue>, NonFiniteNumber> {
        serde_json::value::to_raw_value(&AsJson(value)).map_err(|_| NonFiniteNumber)
    }

    /// Serializes a protobuf number in its JSON form: whole numbers within
    /// ±2^53 as integers; NaN and the infinities are an error.
    pub fn serialize_number<S: serde::Serializer>(
        n: f64,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
            serializer.serialize_i64(n as i64)
        } else if n.is_finite() {
            serializer.serialize_f64(n)
        } else {
            Err(S::Error::custom(NonFiniteNumber))
        }
    }

    /// Serializes a protobuf value in its JSON form.
    struct AsJson<'a>(&'a Value);

    impl serde::Serialize for AsJson<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            use serde::ser::{SerializeMap as _, SerializeSeq as _};
            match &self.0.kind {
                None | Some(Kind::NullValue(_)) => serializer.serialize_unit(),
                Some(Kind::BoolValue(b)) => serializer.serialize_bool(*b),
                Some(Kind::StringValue(text)) => serializer.serialize_str(text),
                Some(Kind::NumberValue(n)) => serialize_number(*n, serializer),
                Some(Kind::ListValue(list)) => {
                    let mut seq = serializer.serialize_seq(Some(list.values.len()))?;
                    for item in &list.values {
                        seq.serialize_element(&AsJson(item))?;
                    }
                    seq.end()
                }
                Some(Kind::StructValue(object)) => {
                    let mut map = serializer.serialize_map(Some(object.fields.len()))?;
                    for (key, item) in &object.fields {
                        map.serialize_entry(key, &AsJson(item))?;
                    }
                    map.end()
                }
            }
        }
    }

    /// Parses JSON text straight into a protobuf value, with no intermediate
    /// tree: the same value `json_to_value` gives for the parsed text.
    pub fn json_text_to_value(text: &str) -> Result<Value, serde_json::Error> {
        let FromJson(value) = serde_json::from_str(text)?;
        Ok(value)
    }

    /// A protobuf value deserialized from JSON.
    struct FromJson(Value);

    impl<'de> serde::Deserialize<'de> for FromJson {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(FromJsonVisitor)
        }
    }

    struct FromJsonVisitor;

    fn of(kind: Kind) -> FromJson {
        FromJson(Value { kind: Some(kind) })
    }

    impl<'de> serde::de::Visitor<'de> for FromJsonVisitor {
        type Value = FromJson;

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("any JSON value")
        }
        fn visit_unit<E>(self) -> Result<FromJson, E> {
            Ok(of(Kind::NullValue(0)))
        }
        fn visit_bool<E>(self, b: bool) -> Result<FromJson, E> {
            Ok(of(Kind::BoolValue(b)))
        }
        fn visit_i64<E>(self, n: i64) -> Result<FromJson, E> {
            Ok(of(Kind::NumberValue(n as f64)))
        }
        fn visit_u64<E>(self, n: u64) -> Result<FromJson, E> {
            Ok(of(Kind::NumberValue(n as f64)))
        }
        fn visit_f64<E>(self, n: f64) -> Result<FromJson, E> {
            Ok(of(Kind::NumberValue(n)))
        }
        fn visit_str<E>(self, text: &str) -> Result<FromJson, E> {
            Ok(of(Kind::StringValue(text.to_owned())))
        }
        fn visit_string<E>(self, text: String) -> Result<FromJson, E> {
            Ok(of(Kind::StringValue(text)))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<FromJson, A::Error> {
            let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(FromJson(item)) = seq.next_element()? {
                values.push(item);
            }
            Ok(of(Kind::ListValue(ListValue { values })))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<FromJson, A::Error> {
            let mut fields = std::collections::BTreeMap::new();
            // A repeated key keeps its last value, as in `serde_json::Value`.
            while let Some((key, FromJson(item))) = map.next_entry::<String, FromJson>()? {
                fields.insert(key, item);
            }
            Ok(of(Kind::StructValue(Struct { fields })))
        }
    }

    /// Converts JSON into a protobuf value. Numbers become doubles, as in
    /// JavaScript.
    pub fn json_to_value(json: &Json) -> Value {
        let kind = match json {
            Json::Null => Kind::NullValue(0),
            Json::Bool(b) => Kind::BoolValue(*b),
            Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
            Json::String(s) => Kind::StringValue(s.clone()),
            Json::Array(items) => Kind::ListValue(ListValue {
                values: items.iter().map(json_to_value).collect(),
            }),
            Json::Object(map) => Kind::StructValue(Struct {
                fields: map
                    .iter()
                    .map(|(k, v)| (k.clone(), json_to_value(v)))
                    .collect(),
            }),
        };
        Value { kind: Some(kind) }
    }
}

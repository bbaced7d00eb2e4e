//! `google.protobuf.Value` kept in its protobuf encoding, and direct
//! conversions between that encoding and JSON text.
//!
//! The gRPC door receives relayed payloads as protobuf values and the core
//! carries them as JSON text. Decoding into a `prost_types::Value` tree
//! (a `BTreeMap` and a `String` per object key) only to write it out as JSON
//! again, and the reverse on the way out, was about half the work of a gRPC
//! relay. Here the encoded bytes are walked once and JSON is written from
//! them, and JSON text is parsed once into protobuf bytes.
//!
//! Every result is the one the tree conversions in [`super::json`] give:
//! the walk handles the canonical encoding (one kind per value, object keys
//! in ascending order, each once, no unknown fields: what prost and the
//! other official libraries write for a sorted map) and hands anything else
//! to the tree conversion, which applies protobuf's merge rules.

use bytes::{Buf, BufMut};
use prost::DecodeError;
use prost::encoding::{
    DecodeContext, WireType, check_wire_type, decode_varint, encode_key, encode_varint, skip_field,
};

use crate::core::payload::MAX_PAYLOAD_DEPTH;
use crate::core::{JsonPayload, NativePayload};

use super::json::{json_text_to_value, value_to_raw_json};

mod from_json;
#[cfg(test)]
mod tests;
mod to_json;
mod wire;

use from_json::*;
use to_json::*;
use wire::*;

/// A `google.protobuf.Value` as its protobuf encoding: the message's fields,
/// without its own tag and length. The gRPC server's generated types use
/// it wherever the contract says `google.protobuf.Value`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct EncodedValue {
    bytes: Vec<u8>,
}

/// Why an encoded value has no JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The bytes are not a `google.protobuf.Value`.
    #[error("the bytes are not a google.protobuf.Value")]
    Undecodable,
    /// A number is NaN or an infinity, which JSON cannot write.
    #[error("numbers must be finite to travel as JSON")]
    NonFiniteNumber,
}

/// Deepest nesting the walks follow: a payload's own limit, so no walk goes
/// deeper than any payload may be. Deeper values go to the tree conversion
/// (whose decoder has protobuf's recursion limit), which refuses them.
const MAX_WALK_DEPTH: usize = MAX_PAYLOAD_DEPTH;

/// Most bytes reserved ahead for a value being decoded (the rest of the
/// message bounds it; a larger value grows the buffer as it is copied).
const MAX_RESERVE: usize = 64 * 1024;

impl EncodedValue {
    /// Takes protobuf bytes as they are; they are checked when converted.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        EncodedValue { bytes }
    }

    /// The protobuf encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The value as JSON text: whole numbers within ±2^53 as integers,
    /// object keys in ascending order, exactly as
    /// [`value_to_raw_json`] writes the decoded value.
    pub fn to_json_text(&self) -> Result<String, ValueError> {
        if let Some(text) = self.canonical_to_json_text() {
            return Ok(text);
        }
        let value = <prost_types::Value as prost::Message>::decode(self.bytes.as_slice())
            .map_err(|_| ValueError::Undecodable)?;
        let raw = value_to_raw_json(&value).map_err(|_| ValueError::NonFiniteNumber)?;
        Ok(String::from(Box::<str>::from(raw)))
    }

    /// The JSON text by the direct walk alone: `None` when the encoding is
    /// not canonical (or not valid), where [`EncodedValue::to_json_text`]
    /// falls back to decoding.
    pub fn canonical_to_json_text(&self) -> Option<String> {
        let mut text = String::with_capacity(self.bytes.len() + 16);
        write_canonical(&self.bytes, 0, &mut text)?;
        // The walk wrote JSON; the payload's scan checks it once more.
        Some(text)
    }

    /// A relayed payload as a protobuf value: the JSON text, known to be
    /// valid, is transcoded in one pass (no tokenizer, strings copied
    /// whole unless escaped). The result decodes to the value
    /// [`super::json::json_text_to_value`] gives. A payload that arrived
    /// as a protobuf value in the transcoded form
    /// ([`EncodedValue::into_payload`]) is those bytes again.
    pub fn from_payload(payload: &JsonPayload) -> Self {
        if let Some(value) = payload.native::<EncodedValue>() {
            return value.clone();
        }
        let text = payload.as_str();
        if let Some(bytes) = transcode(text) {
            return EncodedValue { bytes };
        }
        // Not reached for a valid payload: the tree conversion decides.
        json_text_to_value(text).map_or_else(
            |_| EncodedValue::default(),
            |value| EncodedValue {
                bytes: prost::Message::encode_to_vec(&value),
            },
        )
    }

    /// Whether these are exactly the bytes [`EncodedValue::from_payload`]
    /// writes for the value's JSON text, and that text is a valid payload
    /// (nested at most [`MAX_PAYLOAD_DEPTH`] deep, numbers finite). Such a
    /// value can travel to a gRPC peer as it is, and to anyone else as the
    /// JSON it renders: every peer gets what the conversion to JSON and
    /// back would have given it. Anything else (another encoder's field
    /// order, an unset kind, `-0`, overlong lengths) takes the conversion.
    pub fn is_transcoded_form(&self) -> bool {
        transcoded_value(&self.bytes, 0).is_some()
    }

    /// The value as a relayed payload: kept in its encoding when
    /// [`EncodedValue::is_transcoded_form`], else converted to JSON text
    /// (and checked as such).
    pub fn into_payload(self) -> Result<JsonPayload, PayloadError> {
        if self.is_transcoded_form() {
            return Ok(JsonPayload::from_native(self));
        }
        let text = self.to_json_text().map_err(PayloadError::Value)?;
        JsonPayload::from_text(text).map_err(PayloadError::Refused)
    }
}

/// Why an encoded value cannot be relayed.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// It has no JSON text.
    #[error(transparent)]
    Value(ValueError),
    /// Its JSON text is not a valid payload.
    #[error("{0}")]
    Refused(crate::core::Rejection),
}

/// The JSON is rendered by the walk the bytes were checked with, so it
/// passes the payload's checks.
impl NativePayload for EncodedValue {
    fn render_json(&self) -> String {
        // `to_json_text` is the walk for these bytes (they are canonical).
        self.to_json_text().unwrap_or_else(|_| "null".to_owned())
    }

    fn encoded_len(&self) -> usize {
        self.bytes.len()
    }
}

impl prost::Message for EncodedValue {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.bytes);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        // The fields are copied with only their framing checked, and the
        // errors are prost's own. Appending is protobuf's merge: a second
        // occurrence of the message concatenates, and decoding applies the
        // merge rules.
        let expected = match tag {
            1 | 4 => WireType::Varint,
            2 => WireType::SixtyFourBit,
            3 | 5 | 6 => WireType::LengthDelimited,
            // Unknown fields are dropped, as prost's decoding drops them.
            _ => return skip_field(wire_type, tag, buf, ctx),
        };
        check_wire_type(expected, wire_type)?;
        // Room for the key, a length and the contents: one allocation.
        self.bytes.reserve(buf.remaining().min(MAX_RESERVE) + 11);
        encode_key(tag, wire_type, &mut self.bytes);
        match wire_type {
            WireType::Varint => encode_varint(decode_varint(buf)?, &mut self.bytes),
            WireType::SixtyFourBit => {
                let mut number = 0.0;
                prost::encoding::double::merge(wire_type, &mut number, buf, ctx)?;
                self.bytes.extend_from_slice(&number.to_le_bytes());
            }
            _ => {
                // From tonic's buffer this takes the bytes without a copy.
                let mut contents = bytes::Bytes::new();
                prost::encoding::bytes::merge(wire_type, &mut contents, buf, ctx)?;
                encode_varint(contents.len() as u64, &mut self.bytes);
                self.bytes.extend_from_slice(&contents);
            }
        }
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    fn clear(&mut self) {
        self.bytes.clear();
    }
}

// Keys of the fields this module reads and writes (field number << 3 | wire type).

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

use super::json::{MAX_SAFE_INTEGER, json_text_to_value, serialize_number, value_to_raw_json};

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

/// Deepest nesting the canonical walk follows; deeper values go to the tree
/// conversion, whose decoder has protobuf's recursion limit.
const MAX_WALK_DEPTH: usize = 64;

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
        let mut transcoder = Transcoder {
            text: text.as_bytes(),
            at: 0,
            out: Vec::with_capacity(text.len() + 16),
        };
        if transcoder.value(0).is_some() && transcoder.peek().is_none() {
            return EncodedValue {
                bytes: transcoder.out,
            };
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

/// Reads a length that [`end_delimited`] would have written (the shortest
/// varint), then that many bytes.
fn take_transcoded_delimited<'a>(reader: &mut &'a [u8]) -> Option<&'a [u8]> {
    let before = reader.len();
    let contents = take_delimited(reader)?;
    let prefix = before - reader.len() - contents.len();
    (prefix == prost::encoding::encoded_len_varint(contents.len() as u64)).then_some(contents)
}

/// Checks a `Value`'s fields against what [`Transcoder::value`] writes:
/// one kind, set; `null` and booleans as one byte; numbers finite and not
/// `-0` (which JSON writes as `0`); strings valid UTF-8; containers at
/// most [`MAX_PAYLOAD_DEPTH`] deep; object keys present, ascending and
/// unique (the JSON walk writes them sorted); shortest lengths.
fn transcoded_value(mut reader: &[u8], depth: usize) -> Option<()> {
    let (&key, rest) = reader.split_first()?;
    reader = rest;
    match key {
        NULL_KEY => (reader == [0]).then_some(()),
        BOOL_KEY => matches!(reader, [0] | [1]).then_some(()),
        NUMBER_KEY => {
            let number = f64::from_le_bytes(*<&[u8; 8]>::try_from(reader).ok()?);
            (number.is_finite() && !(number == 0.0 && number.is_sign_negative())).then_some(())
        }
        STRING_KEY => {
            let text = take_transcoded_delimited(&mut reader)?;
            at_end(reader)?;
            std::str::from_utf8(text).ok().map(drop)
        }
        LIST_KEY | STRUCT_KEY if depth < MAX_PAYLOAD_DEPTH => {
            let mut items = take_transcoded_delimited(&mut reader)?;
            at_end(reader)?;
            let mut previous: Option<&[u8]> = None;
            while !items.is_empty() {
                if !take_key(&mut items, ENTRY_KEY) {
                    return None;
                }
                let mut item = take_transcoded_delimited(&mut items)?;
                if key == STRUCT_KEY {
                    // An entry: its key (always written), then its value.
                    if !take_key(&mut item, ENTRY_KEY) {
                        return None;
                    }
                    let name = take_transcoded_delimited(&mut item)?;
                    std::str::from_utf8(name).ok()?;
                    if previous.is_some_and(|previous| name <= previous) {
                        return None;
                    }
                    previous = Some(name);
                    if !take_key(&mut item, ENTRY_VALUE_KEY) {
                        return None;
                    }
                    let value = take_transcoded_delimited(&mut item)?;
                    at_end(item)?;
                    item = value;
                }
                transcoded_value(item, depth + 1)?;
            }
            Some(())
        }
        _ => None,
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
const NULL_KEY: u8 = 1 << 3; // Value.null_value, varint
const NUMBER_KEY: u8 = (2 << 3) | 1; // Value.number_value, fixed64
const STRING_KEY: u8 = (3 << 3) | 2; // Value.string_value
const BOOL_KEY: u8 = 4 << 3; // Value.bool_value, varint
const STRUCT_KEY: u8 = (5 << 3) | 2; // Value.struct_value
const LIST_KEY: u8 = (6 << 3) | 2; // Value.list_value
const ENTRY_KEY: u8 = (1 << 3) | 2; // Struct.fields (a map entry); ListValue.values; an entry's key
const ENTRY_VALUE_KEY: u8 = (2 << 3) | 2; // a map entry's value

/// Reads a length-delimited field's contents.
fn take_delimited<'a>(reader: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(decode_varint(reader).ok()?).ok()?;
    if reader.len() < len {
        return None;
    }
    let (contents, rest) = reader.split_at(len);
    *reader = rest;
    Some(contents)
}

/// Reads the key of the next field if it is `key` (a one-byte key).
fn take_key(reader: &mut &[u8], key: u8) -> bool {
    match reader.split_first() {
        Some((&first, rest)) if first == key => {
            *reader = rest;
            true
        }
        _ => false,
    }
}

fn at_end(reader: &[u8]) -> Option<()> {
    reader.is_empty().then_some(())
}

/// Writes a canonically encoded value as JSON, as serde_json writes the
/// decoded value ([`value_to_raw_json`]); `None` for anything else (the
/// tree conversion decides).
fn write_canonical(mut reader: &[u8], depth: usize, out: &mut String) -> Option<()> {
    let Some((&key, rest)) = reader.split_first() else {
        // No kind set: null, as in the tree conversion.
        out.push_str("null");
        return Some(());
    };
    reader = rest;
    // Exactly one field: the kind.
    match key {
        NULL_KEY => {
            decode_varint(&mut reader).ok()?;
            at_end(reader)?;
            out.push_str("null");
        }
        NUMBER_KEY => {
            let (number, rest) = reader.split_first_chunk::<8>()?;
            at_end(rest)?;
            write_number(f64::from_le_bytes(*number), out)?;
        }
        STRING_KEY => {
            let text = take_delimited(&mut reader)?;
            at_end(reader)?;
            write_string(std::str::from_utf8(text).ok()?, out);
        }
        BOOL_KEY => {
            let flag = decode_varint(&mut reader).ok()?;
            at_end(reader)?;
            out.push_str(if flag != 0 { "true" } else { "false" });
        }
        STRUCT_KEY if depth < MAX_WALK_DEPTH => {
            let fields = take_delimited(&mut reader)?;
            at_end(reader)?;
            write_struct(fields, depth + 1, out)?;
        }
        LIST_KEY if depth < MAX_WALK_DEPTH => {
            let items = take_delimited(&mut reader)?;
            at_end(reader)?;
            write_list(items, depth + 1, out)?;
        }
        _ => return None,
    }
    Some(())
}

fn write_list(mut reader: &[u8], depth: usize, out: &mut String) -> Option<()> {
    out.push('[');
    let mut first = true;
    while !reader.is_empty() {
        if !take_key(&mut reader, ENTRY_KEY) {
            return None;
        }
        if !first {
            out.push(',');
        }
        first = false;
        write_canonical(take_delimited(&mut reader)?, depth, out)?;
    }
    out.push(']');
    Some(())
}

fn write_struct(mut reader: &[u8], depth: usize, out: &mut String) -> Option<()> {
    out.push('{');
    let mut previous: Option<&str> = None;
    while !reader.is_empty() {
        if !take_key(&mut reader, ENTRY_KEY) {
            return None;
        }
        let mut entry = take_delimited(&mut reader)?;
        // An entry is its key, then its value; prost leaves out an empty
        // key and a value with no kind.
        let key = if take_key(&mut entry, ENTRY_KEY) {
            std::str::from_utf8(take_delimited(&mut entry)?).ok()?
        } else {
            ""
        };
        let value = if take_key(&mut entry, ENTRY_VALUE_KEY) {
            take_delimited(&mut entry)?
        } else {
            &[]
        };
        at_end(entry)?;
        // Ascending and once each, as a sorted map writes them.
        if let Some(previous) = previous {
            if key <= previous {
                return None;
            }
            out.push(',');
        }
        previous = Some(key);
        write_string(key, out);
        out.push(':');
        write_canonical(value, depth, out)?;
    }
    out.push('}');
    Some(())
}

/// A number as serde_json writes it under [`super::json`]'s rule: whole
/// numbers within ±2^53 as integers; `None` for NaN and the infinities.
fn write_number(n: f64, out: &mut String) -> Option<()> {
    if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
        // An integer's decimal digits, as itoa (serde_json's) writes them.
        push_integer(n as i64, out);
    } else {
        // Fractions are rare in signaling; serde_json (ryu) writes them.
        let mut serializer = serde_json::Serializer::new(Vec::with_capacity(24));
        serialize_number(n, &mut serializer).ok()?;
        out.push_str(std::str::from_utf8(&serializer.into_inner()).ok()?);
    }
    Some(())
}

/// Writes an integer in decimal.
fn push_integer(n: i64, out: &mut String) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.push('-');
    }
    for &digit in &digits[at..] {
        out.push(char::from(digit));
    }
}

/// A JSON string. Text with nothing to escape (the common case) is copied
/// whole; anything else is escaped by serde_json.
fn write_string(text: &str, out: &mut String) {
    if needs_escape(text.as_bytes()) {
        if let Ok(quoted) = serde_json::to_string(text) {
            out.push_str(&quoted);
        }
        return;
    }
    out.push('"');
    out.push_str(text);
    out.push('"');
}

/// Whether some byte is one JSON escapes: a control character, `"` or `\`.
/// Both scans are vectorized: memchr for the two characters, and an OR
/// over every byte (no early exit) for the control characters.
fn needs_escape(bytes: &[u8]) -> bool {
    memchr::memchr2(b'"', b'\\', bytes).is_some()
        || bytes
            .iter()
            .fold(false, |control, &byte| control | (byte < 0x20))
}

/// Starts a length-delimited field's contents: a one-byte length is
/// reserved and [`end_delimited`] fixes it.
fn start_delimited(out: &mut Vec<u8>, key: u8) -> usize {
    out.extend_from_slice(&[key, 0]);
    out.len()
}

/// Writes the length of contents started at `start`, widening the length
/// prefix in place when the contents are 128 bytes or more.
fn end_delimited(out: &mut Vec<u8>, start: usize) {
    let len = out.len() - start;
    let mut prefix = [0u8; 10];
    let mut width = 0;
    let mut rest = len as u64;
    loop {
        let low = (rest & 0x7f) as u8;
        rest >>= 7;
        if rest == 0 {
            prefix[width] = low;
            width += 1;
            break;
        }
        prefix[width] = low | 0x80;
        width += 1;
    }
    if width > 1 {
        // Move the contents right to make room for the wider prefix.
        let end = out.len();
        out.resize(end + width - 1, 0);
        out.copy_within(start..end, start + width - 1);
    }
    out[start - 1..start - 1 + width].copy_from_slice(&prefix[..width]);
}

/// Transcodes JSON text that is known to be valid (a [`JsonPayload`]) into
/// a `Value`'s protobuf fields in one pass, without a tokenizer in front.
/// `None` on anything unexpected; the caller then takes serde_json's way.
struct Transcoder<'a> {
    text: &'a [u8],
    at: usize,
    out: Vec<u8>,
}

impl Transcoder<'_> {
    fn peek(&mut self) -> Option<u8> {
        while let Some(&byte) = self.text.get(self.at) {
            if !matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(byte);
            }
            self.at += 1;
        }
        None
    }

    fn literal(&mut self, word: &[u8], fields: [u8; 2]) -> Option<()> {
        if !self.text.get(self.at..)?.starts_with(word) {
            return None;
        }
        self.at += word.len();
        self.out.extend_from_slice(&fields);
        Some(())
    }

    /// Writes the fields of the `Value` at the cursor.
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'n' => self.literal(b"null", [NULL_KEY, 0]),
            b't' => self.literal(b"true", [BOOL_KEY, 1]),
            b'f' => self.literal(b"false", [BOOL_KEY, 0]),
            b'"' => {
                self.out.push(STRING_KEY);
                self.string()
            }
            b'-' | b'0'..=b'9' => self.number(),
            b'[' if depth < MAX_WALK_DEPTH => self.container(LIST_KEY, b']', |this| {
                let item = start_delimited(&mut this.out, ENTRY_KEY);
                this.value(depth + 1)?;
                end_delimited(&mut this.out, item);
                Some(())
            }),
            b'{' if depth < MAX_WALK_DEPTH => {
                self.container(STRUCT_KEY, b'}', |this| this.entry(depth + 1))
            }
            _ => None,
        }
    }

    /// Writes the array or object at the cursor (at its opening bracket)
    /// as a length-delimited field with `key`, its items by `item`.
    fn container(
        &mut self,
        key: u8,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.at += 1;
        let contents = start_delimited(&mut self.out, key);
        if self.peek()? == close {
            self.at += 1;
        } else {
            loop {
                item(self)?;
                if !self.after_item(close)? {
                    break;
                }
            }
        }
        end_delimited(&mut self.out, contents);
        Some(())
    }

    /// Writes the object member at the cursor as a map entry: its key,
    /// then its value.
    fn entry(&mut self, depth: usize) -> Option<()> {
        if self.peek()? != b'"' {
            return None;
        }
        let entry = start_delimited(&mut self.out, ENTRY_KEY);
        self.out.push(ENTRY_KEY);
        self.string()?;
        if self.peek()? != b':' {
            return None;
        }
        self.at += 1;
        let value = start_delimited(&mut self.out, ENTRY_VALUE_KEY);
        self.value(depth)?;
        end_delimited(&mut self.out, value);
        end_delimited(&mut self.out, entry);
        Some(())
    }

    /// After an item: `true` at a comma (more follow), `false` at `close`.
    fn after_item(&mut self, close: u8) -> Option<bool> {
        let byte = self.peek()?;
        self.at += 1;
        match byte {
            b',' => Some(true),
            _ if byte == close => Some(false),
            _ => None,
        }
    }

    /// Writes the string at the cursor (at its opening quote) as a length
    /// and its unescaped UTF-8 bytes.
    fn string(&mut self) -> Option<()> {
        self.at += 1;
        let rest = self.text.get(self.at..)?;
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[end] == b'"' {
            // Nothing escaped: the bytes as they are.
            encode_varint(end as u64, &mut self.out);
            self.out.extend_from_slice(&rest[..end]);
            self.at += end + 1;
            return Some(());
        }
        let start = self.out.len() + 1;
        self.out.push(0);
        loop {
            let rest = self.text.get(self.at..)?;
            let stop = memchr::memchr2(b'"', b'\\', rest)?;
            self.out.extend_from_slice(&rest[..stop]);
            self.at += stop + 1;
            if rest[stop] == b'"' {
                break;
            }
            let escaped = *self.text.get(self.at)?;
            self.at += 1;
            let byte = match escaped {
                b'"' | b'\\' | b'/' => escaped,
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'u' => {
                    let character = self.unicode_escape()?;
                    let mut utf8 = [0; 4];
                    self.out
                        .extend_from_slice(character.encode_utf8(&mut utf8).as_bytes());
                    continue;
                }
                _ => return None,
            };
            self.out.push(byte);
        }
        end_delimited(&mut self.out, start);
        Some(())
    }

    /// The character of a `\u` escape (after the `u`), pairing surrogates.
    fn unicode_escape(&mut self) -> Option<char> {
        let first = self.hex4()?;
        if !(0xD800..0xDC00).contains(&first) {
            return char::from_u32(first);
        }
        if self.text.get(self.at..self.at + 2)? != b"\\u" {
            return None;
        }
        self.at += 2;
        let second = self.hex4()?;
        if !(0xDC00..0xE000).contains(&second) {
            return None;
        }
        char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = std::str::from_utf8(self.text.get(self.at..self.at + 4)?).ok()?;
        self.at += 4;
        u32::from_str_radix(digits, 16).ok()
    }

    /// Writes the number at the cursor as a double, as serde_json reads it:
    /// integers through a `u64` (`-0` is negative zero), anything else
    /// correctly rounded (serde_json's `float_roundtrip`, Rust's `parse`).
    fn number(&mut self) -> Option<()> {
        let start = self.at;
        let rest = self.text.get(start..)?;
        let len = rest
            .iter()
            .position(|byte| !matches!(byte, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .unwrap_or(rest.len());
        let token = std::str::from_utf8(&rest[..len]).ok()?;
        self.at += len;
        let (negative, digits) = match token.strip_prefix('-') {
            Some(digits) => (true, digits),
            None => (false, token),
        };
        let n = if digits.len() <= 19 && digits.bytes().all(|byte| byte.is_ascii_digit()) {
            let magnitude: u64 = digits.parse().ok()?;
            match (negative, magnitude) {
                (false, _) => magnitude as f64,
                (true, 0) => -0.0,
                (true, _) => -(magnitude as f64),
            }
        } else {
            token.parse::<f64>().ok().filter(|n| n.is_finite())?
        };
        self.out.push(NUMBER_KEY);
        self.out.extend_from_slice(&n.to_le_bytes());
        Some(())
    }
}

#[cfg(test)]
mod tests {
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
                let Some(prost_types::value::Kind::ListValue(list)) =
                    fields.fields["b"].kind.clone()
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
        let nested = |depth: usize| {
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
                assert_eq!(needs_escape(&bytes), naive, "byte {byte} at {at}");
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
}

//! Canonically encoded `Value` bytes → JSON text, in one walk.

use prost::encoding::decode_varint;

use super::super::json::{MAX_SAFE_INTEGER, serialize_number};
use super::wire::*;
use super::*;
use crate::core::json_text::find_string_special;

/// Writes a canonically encoded value as JSON, as serde_json writes the
/// decoded value ([`value_to_raw_json`]); `None` for anything else (the
/// tree conversion decides).
pub(super) fn write_canonical(mut reader: &[u8], depth: usize, out: &mut String) -> Option<()> {
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

pub(super) fn write_list(mut reader: &[u8], depth: usize, out: &mut String) -> Option<()> {
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

pub(super) fn write_struct(mut reader: &[u8], depth: usize, out: &mut String) -> Option<()> {
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
pub(super) fn write_number(n: f64, out: &mut String) -> Option<()> {
    if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
        // An integer's decimal digits, as itoa (serde_json's) writes them.
        out.push_str(itoa::Buffer::new().format(n as i64));
    } else {
        // Fractions are rare in signaling; serde_json (ryu) writes them.
        let mut serializer = serde_json::Serializer::new(Vec::with_capacity(24));
        serialize_number(n, &mut serializer).ok()?;
        out.push_str(std::str::from_utf8(&serializer.into_inner()).ok()?);
    }
    Some(())
}

/// A JSON string. Text with nothing to escape (the common case) is copied
/// whole; anything else is escaped by serde_json.
pub(super) fn write_string(text: &str, out: &mut String) {
    if find_string_special(text.as_bytes()).is_some() {
        if let Ok(quoted) = serde_json::to_string(text) {
            out.push_str(&quoted);
        }
        return;
    }
    out.push('"');
    out.push_str(text);
    out.push('"');
}

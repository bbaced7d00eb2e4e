//! The protobuf side: the one-byte keys of `Value`'s fields, reading and
//! writing length-delimited fields, and the check that bytes are in the
//! canonical form the JSON walk writes.

use prost::encoding::decode_varint;

use crate::core::payload::MAX_PAYLOAD_DEPTH;

pub(super) const NULL_KEY: u8 = 1 << 3; // Value.null_value, varint
pub(super) const NUMBER_KEY: u8 = (2 << 3) | 1; // Value.number_value, fixed64
pub(super) const STRING_KEY: u8 = (3 << 3) | 2; // Value.string_value
pub(super) const BOOL_KEY: u8 = 4 << 3; // Value.bool_value, varint
pub(super) const STRUCT_KEY: u8 = (5 << 3) | 2; // Value.struct_value
pub(super) const LIST_KEY: u8 = (6 << 3) | 2; // Value.list_value
pub(super) const ENTRY_KEY: u8 = (1 << 3) | 2; // Struct.fields (a map entry); ListValue.values; an entry's key
pub(super) const ENTRY_VALUE_KEY: u8 = (2 << 3) | 2; // a map entry's value

/// Reads a length-delimited field's contents.
pub(super) fn take_delimited<'a>(reader: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(decode_varint(reader).ok()?).ok()?;
    if reader.len() < len {
        return None;
    }
    let (contents, rest) = reader.split_at(len);
    *reader = rest;
    Some(contents)
}

/// Reads the key of the next field if it is `key` (a one-byte key).
pub(super) fn take_key(reader: &mut &[u8], key: u8) -> bool {
    match reader.split_first() {
        Some((&first, rest)) if first == key => {
            *reader = rest;
            true
        }
        _ => false,
    }
}

pub(super) fn at_end(reader: &[u8]) -> Option<()> {
    reader.is_empty().then_some(())
}

/// Starts a length-delimited field's contents: a one-byte length is
/// reserved and [`end_delimited`] fixes it.
pub(super) fn start_delimited(out: &mut Vec<u8>, key: u8) -> usize {
    out.extend_from_slice(&[key, 0]);
    out.len()
}

/// Writes the length of contents started at `start`, widening the length
/// prefix in place when the contents are 128 bytes or more.
pub(super) fn end_delimited(out: &mut Vec<u8>, start: usize) {
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

/// Reads a length that [`end_delimited`] would have written (the shortest
/// varint), then that many bytes.
pub(super) fn take_transcoded_delimited<'a>(reader: &mut &'a [u8]) -> Option<&'a [u8]> {
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
pub(super) fn transcoded_value(mut reader: &[u8], depth: usize) -> Option<()> {
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

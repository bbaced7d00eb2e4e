//! JSON text → `Value` bytes, in one pass.

use prost::encoding::encode_varint;

use super::wire::*;
use super::*;

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

/// `text` (valid JSON: a [`JsonPayload`]'s) as a `Value`'s protobuf fields;
/// `None` on anything unexpected (the caller takes the tree conversion).
pub(super) fn transcode(text: &str) -> Option<Vec<u8>> {
    let mut transcoder = Transcoder {
        text: text.as_bytes(),
        at: 0,
        out: Vec::with_capacity(text.len() + 16),
    };
    (transcoder.value(0).is_some() && transcoder.peek().is_none()).then_some(transcoder.out)
}

//! A validating scanner for JSON text: one pass finds where a value ends,
//! checks it against the JSON grammar (RFC 8259, as serde_json reads it)
//! and notes what the payload rules need to know ([`TextShape`]), without
//! building anything.
//!
//! The JSON doors use it to take a frame's envelope apart and keep the
//! relayed `data` as text, so a relayed payload is read once instead of
//! once by serde_json and once more for its shape.

/// Deepest accepted nesting of arrays and objects in a relayed payload
/// (re-exported by `payload`; it lives here, with the scanner that
/// enforces it).
///
/// Every door must be able to carry every accepted payload; protobuf
/// decoders stop at 100 nested messages and each JSON level costs two of
/// them in a `google.protobuf.Value`, so the limit is set well below that.
pub const MAX_PAYLOAD_DEPTH: usize = 32;

// The scanner remembers, per open container, whether it is an object in one
// bit of a `u64`: a deeper limit would overflow it.
const _: () = assert!(
    MAX_PAYLOAD_DEPTH <= 64,
    "the scanner's container mask is a u64"
);

/// What one pass over JSON text finds out, without parsing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextShape {
    /// Nesting depth of arrays and objects (`1` for `[]`, `0` for a scalar).
    pub depth: usize,
    /// Whether every number is within the range of a double (what
    /// JavaScript and `google.protobuf.Value` can hold).
    pub numbers_finite: bool,
    /// Whether some string holds a `\u` escape (which the scan does not
    /// check for lone surrogates).
    pub unicode_escapes: bool,
}

/// Why text is not one acceptable JSON value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// Not JSON.
    #[error("not valid JSON")]
    Invalid,
    /// Arrays and objects nested deeper than [`MAX_PAYLOAD_DEPTH`] (the
    /// scan stops there; the text may or may not be JSON).
    #[error("nested more than {MAX_PAYLOAD_DEPTH} levels deep")]
    TooDeep,
}

/// One JSON value the scanner checked: its text and shape. Only the scanner
/// makes one, so holding one proves the text is valid JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScannedJson<'a> {
    text: &'a str,
    shape: TextShape,
}

impl<'a> ScannedJson<'a> {
    /// The value's text (no surrounding whitespace).
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// What the scan found.
    pub fn shape(&self) -> TextShape {
        self.shape
    }
}

/// Checks that `text` is exactly one JSON value (whitespace around it
/// allowed) nested at most [`MAX_PAYLOAD_DEPTH`] deep.
pub fn scan_json(text: &str) -> Result<ScannedJson<'_>, ScanError> {
    let mut scanner = JsonScanner::new(text);
    let value = scanner.value()?;
    if scanner.at_end() {
        Ok(value)
    } else {
        Err(ScanError::Invalid)
    }
}

/// A cursor over JSON text for reading an envelope by hand: the caller
/// walks the outer object, the scanner checks each value.
#[derive(Debug)]
pub struct JsonScanner<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> JsonScanner<'a> {
    /// A scanner at the start of `text`.
    pub fn new(text: &'a str) -> Self {
        JsonScanner { text, at: 0 }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.at) {
            self.at += 1;
        }
    }

    /// Skips whitespace; the next byte, if any.
    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes().get(self.at).copied()
    }

    /// Skips whitespace, then takes `byte` if it comes next.
    pub fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// Whether only whitespace is left.
    pub fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// Takes a `null` if one comes next.
    pub fn eat_null(&mut self) -> bool {
        if self.peek() == Some(b'n') && self.bytes()[self.at..].starts_with(b"null") {
            self.at += 4;
            true
        } else {
            false
        }
    }

    /// Reads a string without escapes and returns its contents; `None` if
    /// no string comes next, or it holds an escape or a control character
    /// (the scanner is then left somewhere inside it).
    pub fn plain_string(&mut self) -> Option<&'a str> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.at;
        let offset = find_string_special(&self.bytes()[start..])?;
        self.at = start + offset;
        if self.bytes()[self.at] != b'"' {
            return None;
        }
        self.at += 1;
        // The quote is ASCII, so both ends are character boundaries.
        self.text.get(start..start + offset)
    }

    /// Reads and checks one value (after any whitespace).
    pub fn value(&mut self) -> Result<ScannedJson<'a>, ScanError> {
        self.skip_whitespace();
        let start = self.at;
        let mut shape = TextShape {
            depth: 0,
            numbers_finite: true,
            unicode_escapes: false,
        };
        // Bit `n` tells whether level `n` is an object (else an array).
        let mut objects: u64 = 0;
        let mut depth = 0usize;
        'value: loop {
            self.skip_whitespace();
            match self.bytes().get(self.at).copied() {
                Some(b'"') => self.string(&mut shape)?,
                Some(b'-' | b'0'..=b'9') => self.number(&mut shape)?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(open @ (b'[' | b'{')) => {
                    if depth == MAX_PAYLOAD_DEPTH {
                        return Err(ScanError::TooDeep);
                    }
                    let object = open == b'{';
                    if object {
                        objects |= 1 << depth;
                    } else {
                        objects &= !(1 << depth);
                    }
                    depth += 1;
                    shape.depth = shape.depth.max(depth);
                    self.at += 1;
                    let close = if object { b'}' } else { b']' };
                    if !self.eat(close) {
                        if object {
                            self.key(&mut shape)?;
                        }
                        continue 'value;
                    }
                    depth -= 1;
                }
                _ => return Err(ScanError::Invalid),
            }
            // After a value: close containers until one continues.
            loop {
                if depth == 0 {
                    let text = self.text.get(start..self.at).ok_or(ScanError::Invalid)?;
                    return Ok(ScannedJson { text, shape });
                }
                let object = objects & (1 << (depth - 1)) != 0;
                match self.peek() {
                    Some(b',') => {
                        self.at += 1;
                        if object {
                            self.key(&mut shape)?;
                        }
                        continue 'value;
                    }
                    Some(b'}') if object => {}
                    Some(b']') if !object => {}
                    _ => return Err(ScanError::Invalid),
                }
                self.at += 1;
                depth -= 1;
            }
        }
    }

    /// An object key and its colon.
    fn key(&mut self, shape: &mut TextShape) -> Result<(), ScanError> {
        if self.peek() != Some(b'"') {
            return Err(ScanError::Invalid);
        }
        self.string(shape)?;
        if self.eat(b':') {
            Ok(())
        } else {
            Err(ScanError::Invalid)
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), ScanError> {
        if self.bytes()[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(ScanError::Invalid)
        }
    }

    /// A string, from its opening quote: no control characters, only the
    /// escapes JSON defines.
    fn string(&mut self, shape: &mut TextShape) -> Result<(), ScanError> {
        let bytes = self.bytes();
        self.at += 1;
        loop {
            let offset = find_string_special(&bytes[self.at..]).ok_or(ScanError::Invalid)?;
            self.at += offset;
            match bytes[self.at] {
                b'"' => {
                    self.at += 1;
                    return Ok(());
                }
                b'\\' => match bytes.get(self.at + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                        self.at += 2;
                    }
                    Some(b'u') => {
                        let digits = bytes.get(self.at + 2..self.at + 6);
                        if !digits.is_some_and(|d| d.iter().all(u8::is_ascii_hexdigit)) {
                            return Err(ScanError::Invalid);
                        }
                        shape.unicode_escapes = true;
                        self.at += 6;
                    }
                    _ => return Err(ScanError::Invalid),
                },
                // A control character.
                _ => return Err(ScanError::Invalid),
            }
        }
    }

    /// A number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    /// Only long or exponent-carrying numbers are parsed, to see whether a
    /// double holds them.
    fn number(&mut self, shape: &mut TextShape) -> Result<(), ScanError> {
        let bytes = self.bytes();
        let start = self.at;
        if bytes[self.at] == b'-' {
            self.at += 1;
        }
        match bytes.get(self.at) {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(ScanError::Invalid),
        }
        if bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            self.required_digits()?;
        }
        let exponent = matches!(bytes.get(self.at), Some(b'e' | b'E'));
        if exponent {
            self.at += 1;
            if let Some(b'+' | b'-') = bytes.get(self.at) {
                self.at += 1;
            }
            self.required_digits()?;
        }
        let token = self.text.get(start..self.at).ok_or(ScanError::Invalid)?;
        if (exponent || token.len() > 300) && !token.parse::<f64>().is_ok_and(f64::is_finite) {
            shape.numbers_finite = false;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.bytes().get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
    }

    fn required_digits(&mut self) -> Result<(), ScanError> {
        let start = self.at;
        self.digits();
        if self.at == start {
            Err(ScanError::Invalid)
        } else {
            Ok(())
        }
    }
}

/// The offset of the first quote, backslash or control character, eight
/// bytes at a time (also whether a string needs escaping at all, for the
/// protobuf → JSON walk).
pub(crate) fn find_string_special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    const SPACES: u64 = u64::from_ne_bytes([0x20; 8]);
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        // The classic "has a zero byte" test, for three bytes at once. Its
        // lowest hit is always exact (borrows only move hits upwards).
        let quote = word ^ QUOTES;
        let backslash = word ^ BACKSLASHES;
        let hits = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(SPACES) & !word))
            & HIGHS;
        if hits != 0 {
            return Some(offset + (hits.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)
        .map(|position| offset + position)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_bytes_are_found_at_every_offset() {
        for length in 0..40 {
            for special in [b'"', b'\\', 0x00, 0x1f] {
                for at in 0..length {
                    let mut bytes = vec![b'a'; length];
                    // Bytes around the special one that must not count.
                    bytes.iter_mut().skip(at + 1).for_each(|b| *b = 0x20);
                    bytes[at] = special;
                    assert_eq!(find_string_special(&bytes), Some(at), "{bytes:?}");
                    // A later special byte does not hide the first.
                    if let Some(last) = bytes.last_mut().filter(|_| at + 1 < length) {
                        *last = b'"';
                    }
                    assert_eq!(find_string_special(&bytes), Some(at), "{bytes:?}");
                }
            }
            assert_eq!(find_string_special(&vec![0x7f; length]), None);
            assert_eq!(find_string_special(&vec![0xc3; length]), None);
        }
    }

    #[test]
    fn shapes() {
        let shape = |text: &str| scan_json(text).expect("valid").shape();
        assert_eq!(shape("1").depth, 0);
        assert_eq!(shape("[]").depth, 1);
        assert_eq!(shape(r#"{"a":[{"b":"[[[{{"}]}"#).depth, 3);
        assert_eq!(shape(r#" ["\"[", [1]] "#).depth, 2);
        assert!(shape(r#"{"a":[1,-2.5e10,"1e999"],"b":1.7976931348623157e308}"#).numbers_finite);
        assert!(!shape("1e999").numbers_finite);
        assert!(!shape(&format!("[{}]", "3".repeat(400))).numbers_finite);
        assert!(!shape("[-1E+400]").numbers_finite);
        assert!(shape(r#"["\u00e9"]"#).unicode_escapes);
        assert!(!shape(r#"["\\u00e9"]"#).unicode_escapes);
    }

    #[test]
    fn invalid_text_is_refused() {
        for text in [
            "",
            " ",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "+1",
            "[1,]",
            "{\"a\"}",
            "{\"a\":}",
            "{,}",
            "[",
            "]",
            "{\"a\":1,}",
            "\"\t\"",
            "\"\\x\"",
            "\"\\u12g4\"",
            "tru",
            "nul",
            "[1 2]",
            "{1:2}",
            "\"abc",
            "1 2",
            "{\"a\":1 \"b\":2}",
        ] {
            assert_eq!(scan_json(text), Err(ScanError::Invalid), "{text:?}");
            assert!(serde_json::from_str::<serde::de::IgnoredAny>(text).is_err());
        }
    }

    #[test]
    fn nesting_stops_at_the_limit() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(
            scan_json(&deep(MAX_PAYLOAD_DEPTH)).map(|v| v.shape().depth),
            Ok(MAX_PAYLOAD_DEPTH)
        );
        assert_eq!(
            scan_json(&deep(MAX_PAYLOAD_DEPTH + 1)),
            Err(ScanError::TooDeep)
        );
    }

    #[test]
    fn plain_strings_and_nulls() {
        let mut scanner = JsonScanner::new(r#" "event" : null, "a\"b" "#);
        assert_eq!(scanner.plain_string(), Some("event"));
        assert!(scanner.eat(b':'));
        assert!(scanner.eat_null());
        assert!(scanner.eat(b','));
        assert_eq!(scanner.plain_string(), None);
    }
}

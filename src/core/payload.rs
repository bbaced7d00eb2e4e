//! Relayed JSON, kept as its validated text so that a JSON door can pass it
//! through without re-parsing or re-serializing it.

use serde_json::value::RawValue;

use super::error::Rejection;

/// Deepest accepted nesting of arrays and objects in a relayed payload.
///
/// Every door must be able to carry every accepted payload; protobuf
/// decoders stop at 100 nested messages and each JSON level costs two of
/// them in a `google.protobuf.Value`, so the limit is set well below that.
pub const MAX_PAYLOAD_DEPTH: usize = 32;

/// What one pass over valid JSON text finds out, without parsing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextShape {
    /// Nesting depth of arrays and objects (`1` for `[]`, `0` for a scalar).
    pub depth: usize,
    /// Whether every number is within the range of a double (what
    /// JavaScript and `google.protobuf.Value` can hold).
    pub numbers_finite: bool,
    /// Whether some string holds a `\u` escape (which raw validation does
    /// not check for lone surrogates).
    pub unicode_escapes: bool,
}

/// Scans valid JSON text once. Only long or exponent-carrying number tokens
/// are parsed, so an ordinary payload costs one pass over its bytes.
pub fn scan_json_text(text: &str) -> TextShape {
    let bytes = text.as_bytes();
    let mut shape = TextShape {
        depth: 0,
        numbers_finite: true,
        unicode_escapes: false,
    };
    let mut depth = 0usize;
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        index += 1;
        match byte {
            b'"' => {
                // Jump between the quote and backslash bytes of the string:
                // most of a payload is string content.
                loop {
                    let rest = bytes.get(index..).unwrap_or_default();
                    let Some(offset) = memchr::memchr2(b'"', b'\\', rest) else {
                        // Unterminated (not valid JSON): nothing more to see.
                        index = bytes.len();
                        break;
                    };
                    index += offset + 1;
                    if rest[offset] == b'"' {
                        break;
                    }
                    // A backslash: the escaped byte is skipped with it.
                    if bytes.get(index) == Some(&b'u') {
                        shape.unicode_escapes = true;
                    }
                    index += 1;
                }
            }
            b'[' | b'{' => {
                depth += 1;
                shape.depth = shape.depth.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'-' | b'0'..=b'9' => {
                let start = index - 1;
                while index < bytes.len()
                    && matches!(bytes[index], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    index += 1;
                }
                let token = &text[start..index];
                let suspicious = token.len() > 300 || token.contains(['e', 'E']);
                if suspicious && !token.parse::<f64>().is_ok_and(f64::is_finite) {
                    shape.numbers_finite = false;
                }
            }
            _ => {}
        }
    }
    shape
}

/// The nesting depth of a parsed value.
pub fn json_value_depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => {
            1 + items.iter().map(json_value_depth).max().unwrap_or(0)
        }
        serde_json::Value::Object(map) => 1 + map.values().map(json_value_depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn too_deep() -> Rejection {
    Rejection::bad_request(format!(
        "payload is nested more than {MAX_PAYLOAD_DEPTH} levels deep"
    ))
}

/// Any JSON value, held as text that is known to be valid JSON.
///
/// JSON doors create it straight from the bytes they received
/// ([`JsonPayload::from_raw`]); the gRPC door converts from and to
/// `google.protobuf.Value` only when it is involved.
#[derive(Debug)]
pub struct JsonPayload(Box<RawValue>);

impl JsonPayload {
    /// Copies an already-validated raw JSON value, refusing payloads nested
    /// deeper than [`MAX_PAYLOAD_DEPTH`] and numbers no door but a JSON one
    /// could carry (beyond the range of a double).
    pub fn from_raw(raw: &RawValue) -> Result<Self, Rejection> {
        Self::check(raw.get())?;
        Ok(JsonPayload(raw.to_owned()))
    }

    /// Takes a raw JSON value a door rendered (e.g. from a protobuf value),
    /// with the same checks as [`JsonPayload::from_raw`] and no copy.
    pub fn from_boxed_raw(raw: Box<RawValue>) -> Result<Self, Rejection> {
        Self::check(raw.get())?;
        Ok(JsonPayload(raw))
    }

    fn check(text: &str) -> Result<(), Rejection> {
        let shape = scan_json_text(text);
        if shape.depth > MAX_PAYLOAD_DEPTH {
            return Err(too_deep());
        }
        if !shape.numbers_finite {
            return Err(Rejection::bad_request(
                "numbers must fit in a double (JSON numbers travel as doubles on every door)",
            ));
        }
        // Raw validation lets lone UTF-16 surrogates in `\u` escapes through;
        // such a string has no value on the other doors. Check the (rare)
        // payloads with escapes fully.
        if shape.unicode_escapes && serde_json::from_str::<serde_json::Value>(text).is_err() {
            return Err(Rejection::bad_request(
                "strings must not contain lone UTF-16 surrogates (\\uD800-\\uDFFF)",
            ));
        }
        Ok(())
    }

    /// Renders a parsed value, refusing payloads nested deeper than
    /// [`MAX_PAYLOAD_DEPTH`].
    pub fn from_value(value: &serde_json::Value) -> Result<Self, Rejection> {
        if json_value_depth(value) > MAX_PAYLOAD_DEPTH {
            return Err(too_deep());
        }
        // Serializing a `serde_json::Value` cannot fail: its map keys are strings.
        let text = serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned());
        Ok(RawValue::from_string(text).map_or_else(|_| JsonPayload::null(), JsonPayload))
    }

    /// The JSON `null`.
    pub fn null() -> Self {
        JsonPayload(RawValue::NULL.to_owned())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The raw value, for embedding in a serialized envelope.
    pub fn as_raw(&self) -> &RawValue {
        &self.0
    }

    /// Size of the JSON text in bytes.
    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    /// Whether the text is empty (never true for a valid payload).
    pub fn is_empty(&self) -> bool {
        self.0.get().is_empty()
    }
}

impl Clone for JsonPayload {
    fn clone(&self) -> Self {
        JsonPayload(self.0.clone())
    }
}

impl PartialEq for JsonPayload {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_ignores_brackets_inside_strings() {
        assert_eq!(scan_json_text(r#"1"#).depth, 0);
        assert_eq!(scan_json_text(r#"[]"#).depth, 1);
        assert_eq!(scan_json_text(r#"{"a":[{"b":"[[[{{"}]}"#).depth, 3);
        assert_eq!(scan_json_text(r#"["\"[", [1]]"#).depth, 2);
    }

    #[test]
    fn lone_surrogates_are_refused() {
        let raw = RawValue::from_string(r#"["\ud800"]"#.to_owned()).expect("raw accepts it");
        let parsed = serde_json::from_str::<serde_json::Value>(raw.get());
        assert!(
            JsonPayload::from_raw(&raw).is_err(),
            "value parse: {parsed:?}"
        );
    }

    #[test]
    fn numbers_beyond_a_double_are_refused() {
        assert!(
            scan_json_text(r#"{"a":[1,-2.5e10,"1e999"],"b":1.7976931348623157e308}"#)
                .numbers_finite
        );
        assert!(!scan_json_text("1e999").numbers_finite);
        assert!(!scan_json_text(&format!("[{}]", "3".repeat(400))).numbers_finite);
        assert!(!scan_json_text("[-1E+400]").numbers_finite);
        assert!(scan_json_text(r#"["\u00e9"]"#).unicode_escapes);
        assert!(!scan_json_text(r#"["\\u00e9"]"#).unicode_escapes);
        let raw = RawValue::from_string(format!("[{}]", "3".repeat(400))).expect("json");
        assert!(JsonPayload::from_raw(&raw).is_err());
    }

    #[test]
    fn text_and_value_depth_agree() {
        let text = r#"{"a":[1,{"b":[[]]}],"c":{}}"#;
        let value: serde_json::Value = serde_json::from_str(text).expect("json");
        assert_eq!(scan_json_text(text).depth, json_value_depth(&value));
        assert_eq!(json_value_depth(&value), 5);
    }
}

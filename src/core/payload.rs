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

/// The nesting depth of valid JSON text (`1` for `[]`, `0` for a scalar),
/// found by one pass over the bytes without parsing.
pub fn json_text_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for byte in text.bytes() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Whether every number in valid JSON text is within the range of a double
/// (what JavaScript and `google.protobuf.Value` can hold). Only long or
/// exponent-carrying number tokens are parsed, so ordinary payloads cost
/// one pass over the bytes.
pub fn numbers_are_finite(text: &str) -> bool {
    let bytes = text.as_bytes();
    let (mut in_string, mut escaped) = (false, false);
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            index += 1;
            continue;
        }
        if byte == b'"' {
            in_string = true;
            index += 1;
            continue;
        }
        if byte == b'-' || byte.is_ascii_digit() {
            let start = index;
            while index < bytes.len()
                && matches!(bytes[index], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
            {
                index += 1;
            }
            let token = &text[start..index];
            let suspicious = token.len() > 300 || token.contains(['e', 'E']);
            if suspicious && !token.parse::<f64>().is_ok_and(f64::is_finite) {
                return false;
            }
            continue;
        }
        index += 1;
    }
    true
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
        if json_text_depth(raw.get()) > MAX_PAYLOAD_DEPTH {
            return Err(too_deep());
        }
        if !numbers_are_finite(raw.get()) {
            return Err(Rejection::bad_request(
                "numbers must fit in a double (JSON numbers travel as doubles on every door)",
            ));
        }
        // Raw validation lets lone UTF-16 surrogates in `\u` escapes through;
        // such a string has no value on the other doors. Check the (rare)
        // payloads with escapes fully.
        if raw.get().contains("\\u")
            && serde_json::from_str::<serde_json::Value>(raw.get()).is_err()
        {
            return Err(Rejection::bad_request(
                "strings must not contain lone UTF-16 surrogates (\\uD800-\\uDFFF)",
            ));
        }
        Ok(JsonPayload(raw.to_owned()))
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

    /// Parses the text into a value tree (for doors that need one).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.0.get()).unwrap_or(serde_json::Value::Null)
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
        assert_eq!(json_text_depth(r#"1"#), 0);
        assert_eq!(json_text_depth(r#"[]"#), 1);
        assert_eq!(json_text_depth(r#"{"a":[{"b":"[[[{{"}]}"#), 3);
        assert_eq!(json_text_depth(r#"["\"[", [1]]"#), 2);
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
        assert!(numbers_are_finite(
            r#"{"a":[1,-2.5e10,"1e999"],"b":1.7976931348623157e308}"#
        ));
        assert!(!numbers_are_finite("1e999"));
        assert!(!numbers_are_finite(&format!("[{}]", "3".repeat(400))));
        assert!(!numbers_are_finite("[-1E+400]"));
        let raw = RawValue::from_string(format!("[{}]", "3".repeat(400))).expect("json");
        assert!(JsonPayload::from_raw(&raw).is_err());
    }

    #[test]
    fn text_and_value_depth_agree() {
        let text = r#"{"a":[1,{"b":[[]]}],"c":{}}"#;
        let value: serde_json::Value = serde_json::from_str(text).expect("json");
        assert_eq!(json_text_depth(text), json_value_depth(&value));
        assert_eq!(json_value_depth(&value), 5);
    }
}

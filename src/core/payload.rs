//! Relayed JSON, kept as its validated text so that a JSON door can pass it
//! through without re-parsing or re-serializing it, or in the encoding of
//! the door it came from, so that a peer on the same kind of door gets it
//! without a conversion to JSON and back.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::ser::SerializeStruct as _;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use super::error::Rejection;
pub use super::json_text::{ScanError, ScannedJson, TextShape, scan_json};

pub use super::json_text::MAX_PAYLOAD_DEPTH;

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

/// Any JSON value, held as text that is known to be valid JSON, or in a
/// door's own encoding that renders as such text.
///
/// JSON doors create it straight from the bytes they received
/// ([`JsonPayload::from_scanned`], [`JsonPayload::from_raw`]). The gRPC
/// door keeps a `google.protobuf.Value` it received in its encoding
/// ([`JsonPayload::from_native`]) when that encoding is exactly the one the
/// door would write for the value's JSON text: a gRPC peer then gets the
/// same bytes either way, and the JSON text is rendered only if a JSON door
/// (or the cluster bus) asks for it, once.
#[derive(Clone, Debug)]
pub struct JsonPayload(Text);

/// Where the text came from: serde_json checked it, the scanner did, or a
/// door kept its own encoding. All hold valid JSON; serde_json's form
/// serializes as itself for free.
#[derive(Clone, Debug)]
enum Text {
    Raw(Box<RawValue>),
    Scanned(Box<str>),
    Native(Arc<Native>),
}

/// A relayed value in a door's own encoding (the gRPC door's protobuf
/// `Value`), which renders as JSON text.
///
/// A door makes one only for a value it has checked: the text that
/// [`NativePayload::render_json`] returns must pass the checks of
/// [`JsonPayload::from_text`] (the core scans it once more when rendering,
/// and carries `null` in its place if it does not, logging the door's bug).
pub trait NativePayload: Any + Send + Sync + fmt::Debug {
    /// The value as JSON text.
    fn render_json(&self) -> String;
    /// Bytes the encoding holds, for the memory a session keeps for
    /// resumption; fixed for the payload's life.
    fn encoded_len(&self) -> usize;
}

/// A native payload and its JSON text, once something needed it.
#[derive(Debug)]
struct Native {
    value: Box<dyn NativePayload>,
    json: OnceLock<Box<str>>,
}

impl Native {
    fn json(&self) -> &str {
        self.json.get_or_init(|| {
            let text = self.value.render_json();
            match scan_json(&text)
                .map_err(refusal)
                .and_then(JsonPayload::check)
            {
                Ok(()) => text.into_boxed_str(),
                Err(rejection) => {
                    // The payload's bytes are the client's data: not logged.
                    tracing::error!(
                        encoded_bytes = self.value.encoded_len(),
                        reason = %rejection.message,
                        "a door's native payload rendered invalid JSON; relaying null"
                    );
                    "null".into()
                }
            }
        })
    }
}

impl JsonPayload {
    /// Copies an already-validated raw JSON value, refusing payloads nested
    /// deeper than [`MAX_PAYLOAD_DEPTH`] and numbers no door but a JSON one
    /// could carry (beyond the range of a double).
    pub fn from_raw(raw: &RawValue) -> Result<Self, Rejection> {
        Self::check(scan_json(raw.get()).map_err(refusal)?)?;
        Ok(JsonPayload(Text::Raw(raw.to_owned())))
    }

    /// Copies a value the scanner checked, with the checks of
    /// [`JsonPayload::from_raw`].
    pub fn from_scanned(scanned: ScannedJson<'_>) -> Result<Self, Rejection> {
        Self::check(scanned)?;
        Ok(JsonPayload(Text::Scanned(scanned.text().into())))
    }

    /// Takes JSON text a door rendered (e.g. from a protobuf value): the
    /// scanner checks it (one pass, no copy), with the checks of
    /// [`JsonPayload::from_raw`].
    pub fn from_text(text: String) -> Result<Self, Rejection> {
        let scanned = scan_json(&text).map_err(refusal)?;
        Self::check(scanned)?;
        if scanned.text().len() == text.len() {
            Ok(JsonPayload(Text::Scanned(text.into_boxed_str())))
        } else {
            // Whitespace around the value: keep the value alone.
            Ok(JsonPayload(Text::Scanned(scanned.text().into())))
        }
    }

    /// The payload rules the scan did not already enforce (it stops at
    /// [`MAX_PAYLOAD_DEPTH`] itself).
    fn check(scanned: ScannedJson<'_>) -> Result<(), Rejection> {
        let shape = scanned.shape();
        if !shape.numbers_finite {
            return Err(Rejection::bad_request(
                "numbers must fit in a double (JSON numbers travel as doubles on every door)",
            ));
        }
        // The scan lets lone UTF-16 surrogates in `\u` escapes through; such
        // a string has no value on the other doors. Check the (rare)
        // payloads with escapes fully.
        if shape.unicode_escapes
            && serde_json::from_str::<serde_json::Value>(scanned.text()).is_err()
        {
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
        Ok(RawValue::from_string(text).map_or_else(|_| JsonPayload::null(), JsonPayload::raw))
    }

    /// Keeps a value in its door's encoding; see [`NativePayload`] for what
    /// the door must have checked.
    pub fn from_native(value: impl NativePayload) -> Self {
        JsonPayload(Text::Native(Arc::new(Native {
            value: Box::new(value),
            json: OnceLock::new(),
        })))
    }

    /// The value in a door's encoding, if it was kept in that encoding.
    pub fn native<T: NativePayload>(&self) -> Option<&T> {
        match &self.0 {
            Text::Native(native) => (native.value.as_ref() as &dyn Any).downcast_ref::<T>(),
            _ => None,
        }
    }

    fn raw(raw: Box<RawValue>) -> Self {
        JsonPayload(Text::Raw(raw))
    }

    /// The JSON `null`.
    pub fn null() -> Self {
        JsonPayload::raw(RawValue::NULL.to_owned())
    }

    /// The JSON text (rendered on first use for a native payload).
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Text::Raw(raw) => raw.get(),
            Text::Scanned(text) => text,
            Text::Native(native) => native.json(),
        }
    }

    /// Size of the JSON text in bytes.
    pub fn len(&self) -> usize {
        self.as_str().len()
    }

    /// Bytes the payload holds: its text's length, or its native
    /// encoding's. Fixed for the payload's life (unlike [`JsonPayload::len`]
    /// of a native payload, it renders nothing), so that memory accounting
    /// adds and subtracts the same figure.
    pub fn held_bytes(&self) -> usize {
        match &self.0 {
            Text::Raw(raw) => raw.get().len(),
            Text::Scanned(text) => text.len(),
            Text::Native(native) => native.value.encoded_len(),
        }
    }

    /// Whether the text is empty (never true for a valid payload).
    pub fn is_empty(&self) -> bool {
        self.as_str().is_empty()
    }
}

/// The struct name by which serde_json's serializer recognizes a raw value
/// (`serde_json::value::RawValue` serializes as this struct).
///
/// Leans on serde_json's internals: the token is not public API. If a
/// serde_json release changes it, the payload would be written as a
/// one-field object instead of verbatim, and the test
/// `scanned_and_raw_payloads_are_the_same_json` fails loudly.
const SERDE_JSON_RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Serializes as the JSON value itself (for serde_json: the text verbatim).
impl Serialize for JsonPayload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Text::Raw(raw) => raw.serialize(serializer),
            Text::Scanned(_) | Text::Native(_) => {
                let text = self.as_str();
                // Exactly what `RawValue::serialize` does, for text the
                // scanner has already checked: serde_json writes a struct
                // named by its raw-value token verbatim. (`RawValue` itself
                // can be made from a `String` only by parsing it again, or
                // with `unsafe`.) Other serializers see the same struct a
                // `RawValue` shows them. A test checks the output is the
                // text itself.
                let mut raw = serializer.serialize_struct(SERDE_JSON_RAW_VALUE_TOKEN, 1)?;
                raw.serialize_field(SERDE_JSON_RAW_VALUE_TOKEN, text)?;
                raw.end()
            }
        }
    }
}

impl PartialEq for JsonPayload {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

/// A scan failure as a rejection.
fn refusal(error: ScanError) -> Rejection {
    match error {
        ScanError::TooDeep => too_deep(),
        ScanError::Invalid => Rejection::bad_request("payload is not valid JSON"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A door's encoding that renders whatever text it holds.
    #[derive(Debug, PartialEq)]
    struct Rendered(&'static str);

    impl NativePayload for Rendered {
        fn render_json(&self) -> String {
            self.0.to_owned()
        }
        fn encoded_len(&self) -> usize {
            3
        }
    }

    #[test]
    fn native_payloads_render_once_checked() {
        let payload = JsonPayload::from_native(Rendered(r#"{"a":[1,"b"]}"#));
        assert_eq!(
            payload.native::<Rendered>(),
            Some(&Rendered(r#"{"a":[1,"b"]}"#))
        );
        // What it holds is its encoding's size, before and after rendering.
        assert_eq!(payload.held_bytes(), 3);
        assert_eq!(payload.as_str(), r#"{"a":[1,"b"]}"#);
        assert_eq!(payload.held_bytes(), 3);
        assert_eq!(
            serde_json::to_string(&("message", &payload)).expect("serializes"),
            r#"["message",{"a":[1,"b"]}]"#
        );
        // Clones share the rendering.
        let clone = payload.clone();
        assert!(std::ptr::eq(clone.as_str(), payload.as_str()));
        // Not some other encoding.
        assert!(JsonPayload::null().native::<Rendered>().is_none());
    }

    #[test]
    fn a_native_payload_that_renders_invalid_json_travels_as_null() {
        for text in ["{\"a\":", "[1e999]", &"[".repeat(40)] {
            let payload =
                JsonPayload::from_native(Rendered(Box::leak(text.to_owned().into_boxed_str())));
            assert_eq!(payload.as_str(), "null", "{text}");
        }
    }

    #[test]
    fn lone_surrogates_are_refused() {
        let raw = RawValue::from_string(r#"["\ud800"]"#.to_owned()).expect("raw accepts it");
        let parsed = serde_json::from_str::<serde_json::Value>(raw.get());
        assert!(
            JsonPayload::from_raw(&raw).is_err(),
            "value parse: {parsed:?}"
        );
        assert!(JsonPayload::from_text(raw.get().to_owned()).is_err());
    }

    #[test]
    fn numbers_beyond_a_double_are_refused() {
        let raw = RawValue::from_string(format!("[{}]", "3".repeat(400))).expect("json");
        assert!(JsonPayload::from_raw(&raw).is_err());
        assert!(JsonPayload::from_text("[1e999]".to_owned()).is_err());
    }

    #[test]
    fn text_and_value_depth_agree() {
        let text = r#"{"a":[1,{"b":[[]]}],"c":{}}"#;
        let value: serde_json::Value = serde_json::from_str(text).expect("json");
        assert_eq!(
            scan_json(text).map(|v| v.shape().depth),
            Ok(json_value_depth(&value))
        );
        assert_eq!(json_value_depth(&value), 5);
    }

    #[test]
    fn scanned_and_raw_payloads_are_the_same_json() {
        let text = r#"{"sdp":"v=0\r\n","n":[1,2.5,null]}"#;
        let raw = RawValue::from_string(text.to_owned()).expect("json");
        let from_raw = JsonPayload::from_raw(&raw).expect("payload");
        let from_text = JsonPayload::from_text(format!(" {text}\n")).expect("payload");
        assert_eq!(from_raw, from_text);
        assert_eq!(from_text.as_str(), text);
        assert_eq!(
            serde_json::to_string(&from_text).expect("serializes"),
            serde_json::to_string(&from_raw).expect("serializes")
        );
        // Written verbatim, also inside other values.
        assert_eq!(
            serde_json::to_string(&("message", &from_text, 1)).expect("serializes"),
            format!(r#"["message",{text},1]"#)
        );
        assert!(JsonPayload::from_text("{\"a\":".to_owned()).is_err());
    }
}

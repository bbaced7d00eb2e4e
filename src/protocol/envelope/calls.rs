//! `callreport`'s JSON data: `{"call", "result", "path", "setupMs",
//! "durationMs", "reason"}`, read into the core's fields as they came
//! (the rules are `CallReport::check`'s).

use serde::Deserialize;
use serde_json::Value;

use super::{Data, whole_number};
use crate::core::{CallReport, CallReportFields, Command, Millis, Rejection};

const SHAPE: &str = "callreport needs {\"call\", \"result\"} and, as they apply, \"path\", \"setupMs\", \"durationMs\", \"reason\"";

#[derive(Deserialize)]
struct CallReportData {
    call: Option<Value>,
    result: Option<Value>,
    path: Option<Value>,
    #[serde(rename = "setupMs")]
    setup_ms: Option<Value>,
    #[serde(rename = "durationMs")]
    duration_ms: Option<Value>,
    reason: Option<Value>,
}

/// `callreport`'s data → the checked command.
pub(super) fn decode_call_report(data: Option<Data<'_>>) -> Result<Command, Rejection> {
    let data = data.ok_or_else(|| Rejection::bad_request(SHAPE))?;
    let fields: CallReportData =
        serde_json::from_str(data.text()).map_err(|_| Rejection::bad_request(SHAPE))?;
    let report = CallReport::check(CallReportFields {
        call: text(fields.call, "call")?,
        result: text(fields.result, "result")?,
        path: text(fields.path, "path")?,
        setup_ms: fields.setup_ms.and_then(millis),
        duration_ms: fields.duration_ms.and_then(millis),
        reason: text(fields.reason, "reason")?,
    })?;
    Ok(Command::CallReport(report))
}

/// A string field: absent or `null` is none; anything but a string is refused.
fn text(value: Option<Value>, name: &str) -> Result<Option<String>, Rejection> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(Rejection::bad_request(format!("{name} must be a string"))),
    }
}

/// A millisecond field: absent or `null` is none; a number that is not a
/// whole number ≥ 0, or anything else, is invalid.
fn millis(value: Value) -> Option<Millis> {
    match value {
        Value::Null => None,
        Value::Number(number) => Some(whole_number(&number).map_or(Millis::Invalid, Millis::Whole)),
        _ => Some(Millis::Invalid),
    }
}

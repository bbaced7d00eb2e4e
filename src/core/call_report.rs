//! `callreport` (docs/PROTOCOL.md, *Call outcomes*): what a peer says of
//! one call attempt, and the rules its fields keep.
//!
//! Doors decode a report's fields as they came ([`CallReportFields`]);
//! [`CallReport::check`] is the one place the rules are applied, so every
//! door refuses the same reports with the same messages. The join of the
//! two sides' reports is the hub's (`hub::calls`).

use std::sync::Arc;

use super::error::Rejection;

/// Longest call id, in characters.
pub const MAX_CALL_ID_CHARS: usize = 64;
/// Longest failure reason, in characters.
pub const MAX_REASON_CHARS: usize = 200;

/// How a call attempt ended, as one side saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallResult {
    /// The peer connection reached `connected`.
    Connected,
    /// It reached `failed` (or the client's own timeout ran out first).
    Failed,
    /// A connected call was hung up.
    Closed,
}

impl CallResult {
    /// Every result, in label order.
    pub const ALL: [CallResult; 3] = [
        CallResult::Connected,
        CallResult::Failed,
        CallResult::Closed,
    ];

    /// Its wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            CallResult::Connected => "connected",
            CallResult::Failed => "failed",
            CallResult::Closed => "closed",
        }
    }
}

/// The kind of the selected ICE candidate pair's local candidate: how the
/// media went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallPath {
    /// Directly, on a host address.
    Host,
    /// Through a NAT's mapping learned from STUN.
    Srflx,
    /// Through a mapping learned from the peer.
    Prflx,
    /// Through the TURN relay.
    Relay,
}

impl CallPath {
    /// Its wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            CallPath::Host => "host",
            CallPath::Srflx => "srflx",
            CallPath::Prflx => "prflx",
            CallPath::Relay => "relay",
        }
    }
}

/// A millisecond count as a door read it: a whole number ≥ 0, or not one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Millis {
    /// A whole number of milliseconds.
    Whole(u64),
    /// Negative, fractional, out of range or not a number.
    Invalid,
}

/// A `callreport`'s fields as the door decoded them, before the rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallReportFields {
    /// `call`: the client's id for the attempt.
    pub call: Option<String>,
    /// `result`.
    pub result: Option<String>,
    /// `path`.
    pub path: Option<String>,
    /// `setupMs`.
    pub setup_ms: Option<Millis>,
    /// `durationMs`.
    pub duration_ms: Option<Millis>,
    /// `reason`.
    pub reason: Option<String>,
}

/// A checked `callreport`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallReport {
    /// The client's id for the attempt (1 to 64 characters).
    pub call: Arc<str>,
    /// How it ended, as this side saw it.
    pub result: CallResult,
    /// The selected pair's kind (always there when connected).
    pub path: Option<CallPath>,
    /// First offer or answer to connected or failed.
    pub setup_ms: Option<u64>,
    /// How long a closed call lasted.
    pub duration_ms: Option<u64>,
    /// Why it failed.
    pub reason: Option<Arc<str>>,
}

impl CallReport {
    /// Applies the rules; a broken one is `BAD_REQUEST` naming the field.
    pub fn check(fields: CallReportFields) -> Result<CallReport, Rejection> {
        let call = fields
            .call
            .filter(|call| {
                let chars = call.chars().count();
                (1..=MAX_CALL_ID_CHARS).contains(&chars) && !call.chars().any(char::is_control)
            })
            .ok_or_else(|| {
                Rejection::bad_request(format!(
                    "call must be a string of 1 to {MAX_CALL_ID_CHARS} characters"
                ))
            })?;
        let result = match fields.result.as_deref() {
            Some("connected") => CallResult::Connected,
            Some("failed") => CallResult::Failed,
            Some("closed") => CallResult::Closed,
            _ => {
                return Err(Rejection::bad_request(
                    "result must be connected, failed or closed",
                ));
            }
        };
        let path = match fields.path.as_deref() {
            None => None,
            Some("host") => Some(CallPath::Host),
            Some("srflx") => Some(CallPath::Srflx),
            Some("prflx") => Some(CallPath::Prflx),
            Some("relay") => Some(CallPath::Relay),
            Some(_) => {
                return Err(Rejection::bad_request(
                    "path must be host, srflx, prflx or relay",
                ));
            }
        };
        if result == CallResult::Connected && path.is_none() {
            return Err(Rejection::bad_request(
                "path is required when result is connected",
            ));
        }
        let millis = |value: Option<Millis>, name: &str| match value {
            None => Ok(None),
            Some(Millis::Whole(ms)) => Ok(Some(ms)),
            Some(Millis::Invalid) => Err(Rejection::bad_request(format!(
                "{name} must be a whole number >= 0"
            ))),
        };
        let setup_ms = millis(fields.setup_ms, "setupMs")?;
        let duration_ms = millis(fields.duration_ms, "durationMs")?;
        if duration_ms.is_some() && result != CallResult::Closed {
            return Err(Rejection::bad_request(
                "durationMs is only for result closed",
            ));
        }
        let reason = match fields.reason {
            None => None,
            Some(_) if result != CallResult::Failed => {
                return Err(Rejection::bad_request("reason is only for result failed"));
            }
            Some(reason) if reason.chars().count() > MAX_REASON_CHARS => {
                return Err(Rejection::bad_request(format!(
                    "reason must be at most {MAX_REASON_CHARS} characters"
                )));
            }
            Some(reason) => Some(Arc::from(reason)),
        };
        Ok(CallReport {
            call: Arc::from(call),
            result,
            path,
            setup_ms,
            duration_ms,
            reason,
        })
    }
}

#[cfg(test)]
mod tests;

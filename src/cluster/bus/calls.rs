//! The `call` frame's report: an app session's `callreport`, sent to the
//! node where its web session lives to be joined there. The report is
//! checked again on arrival with the core's rules (a node never trusts
//! another's bytes further than its own clients').

use serde::{Deserialize, Serialize};

use super::BusError;
use crate::core::{CallPath, CallReport, CallReportFields, DoorKind, Millis};

/// A report and the door it was made on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CallWire {
    door: String,
    call: String,
    result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    setup_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl CallWire {
    /// The wire form of `report`, made on `door`.
    pub(crate) fn encode(door: DoorKind, report: &CallReport) -> CallWire {
        CallWire {
            door: door.as_str().to_owned(),
            call: report.call.to_string(),
            result: report.result.as_str().to_owned(),
            path: report.path.map(|path| CallPath::as_str(path).to_owned()),
            setup_ms: report.setup_ms,
            duration_ms: report.duration_ms,
            reason: report.reason.as_deref().map(str::to_owned),
        }
    }

    /// The door and the report, checked.
    pub(crate) fn decode(self) -> Result<(DoorKind, CallReport), BusError> {
        let door = DoorKind::ALL
            .into_iter()
            .find(|door| door.as_str() == self.door)
            .ok_or_else(|| BusError::Malformed(format!("door {}", self.door)))?;
        let report = CallReport::check(CallReportFields {
            call: Some(self.call),
            result: Some(self.result),
            path: self.path,
            setup_ms: self.setup_ms.map(Millis::Whole),
            duration_ms: self.duration_ms.map(Millis::Whole),
            reason: self.reason,
        })
        .map_err(|rejection| BusError::Malformed(rejection.message.into_owned()))?;
        Ok((door, report))
    }
}

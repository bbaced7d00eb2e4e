//! The admin API's call shapes (docs/OPERATIONS.md, *Call outcomes*): the
//! merged answer of `GET /admin/v1/calls` ([`CallsJson`]) and one node's
//! summary as the cluster's node frames carry it ([`NodeCallsJson`], with
//! its raw setup times, so percentiles are taken after merging).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::admin::rfc3339_millis;
use crate::core::Uid;
use crate::core::call_stats::{CallFailure, CallSummary, PairCounts};

/// Calls by door pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairCountsJson {
    /// Calls decided.
    pub total: usize,
    /// Connected.
    pub connected: usize,
    /// Failed.
    pub failed: usize,
}

/// A failed call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureJson {
    /// The uid.
    pub uid: String,
    /// The client's id for the attempt.
    pub call: String,
    /// Why, as a side said (absent when neither did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When (RFC 3339, UTC).
    pub at: String,
}

/// Setup time percentiles, in ms (`null` with no setup times).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupJson {
    /// Median.
    pub p50: Option<u64>,
    /// 95th percentile.
    pub p95: Option<u64>,
}

/// `GET /admin/v1/calls`: the calls every node decided in the window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallsJson {
    /// The window, in seconds.
    pub window_s: u64,
    /// Calls decided (outcomes: `connected` or `failed`).
    pub total: usize,
    /// Connected.
    pub connected: usize,
    /// Failed.
    pub failed: usize,
    /// The share of calls that went through the TURN relay (0 to 1).
    pub relay_share: f64,
    /// Time from first offer or answer to the outcome.
    pub setup_ms: SetupJson,
    /// By `web door/app door` (`none` for a side that did not report).
    pub by_door_pair: BTreeMap<String, PairCountsJson>,
    /// The latest failures, newest first.
    pub recent_failures: Vec<FailureJson>,
    /// Nodes that did not answer in time (their calls are missing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable_nodes: Vec<String>,
}

impl CallsJson {
    /// The answer for `summary` over `window`, with the silent nodes.
    pub fn new(summary: &CallSummary, window: Duration, silent: &[Arc<str>]) -> CallsJson {
        CallsJson {
            window_s: window.as_secs(),
            total: summary.total,
            connected: summary.connected,
            failed: summary.failed,
            relay_share: summary.relay_share(),
            setup_ms: SetupJson {
                p50: summary.setup_quantile(0.5),
                p95: summary.setup_quantile(0.95),
            },
            by_door_pair: pairs_json(&summary.by_door_pair),
            recent_failures: summary.recent_failures.iter().map(failure_json).collect(),
            unreachable_nodes: silent.iter().map(|node| node.to_string()).collect(),
        }
    }
}

/// One node's summary on the cluster's node frames.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCallsJson {
    total: usize,
    connected: usize,
    failed: usize,
    relayed: usize,
    setup_ms: Vec<u64>,
    by_door_pair: BTreeMap<String, PairCountsJson>,
    recent_failures: Vec<NodeFailureJson>,
}

/// A failure with its time in ms since the Unix epoch (exact on the wire).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct NodeFailureJson {
    uid: String,
    call: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    at_ms: u64,
}

impl From<&CallSummary> for NodeCallsJson {
    fn from(summary: &CallSummary) -> NodeCallsJson {
        NodeCallsJson {
            total: summary.total,
            connected: summary.connected,
            failed: summary.failed,
            relayed: summary.relayed,
            setup_ms: summary.setup_ms.clone(),
            by_door_pair: pairs_json(&summary.by_door_pair),
            recent_failures: summary
                .recent_failures
                .iter()
                .map(|failure| NodeFailureJson {
                    uid: failure.uid.as_str().to_owned(),
                    call: failure.call.to_string(),
                    reason: failure.reason.as_deref().map(str::to_owned),
                    at_ms: failure
                        .at
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |since| {
                            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
                        }),
                })
                .collect(),
        }
    }
}

impl TryFrom<NodeCallsJson> for CallSummary {
    type Error = String;

    fn try_from(json: NodeCallsJson) -> Result<CallSummary, String> {
        Ok(CallSummary {
            total: json.total,
            connected: json.connected,
            failed: json.failed,
            relayed: json.relayed,
            setup_ms: json.setup_ms,
            by_door_pair: json
                .by_door_pair
                .into_iter()
                .map(|(pair, counts)| {
                    (
                        pair,
                        PairCounts {
                            total: counts.total,
                            connected: counts.connected,
                            failed: counts.failed,
                        },
                    )
                })
                .collect(),
            recent_failures: json
                .recent_failures
                .into_iter()
                .map(|failure| {
                    Ok(CallFailure {
                        uid: Uid::new(&failure.uid).map_err(|e| e.message.to_string())?,
                        call: Arc::from(failure.call),
                        reason: failure.reason.map(Arc::from),
                        at: SystemTime::UNIX_EPOCH + Duration::from_millis(failure.at_ms),
                    })
                })
                .collect::<Result<_, String>>()?,
        })
    }
}

fn pairs_json(pairs: &BTreeMap<String, PairCounts>) -> BTreeMap<String, PairCountsJson> {
    pairs
        .iter()
        .map(|(pair, counts)| {
            (
                pair.clone(),
                PairCountsJson {
                    total: counts.total,
                    connected: counts.connected,
                    failed: counts.failed,
                },
            )
        })
        .collect()
}

fn failure_json(failure: &CallFailure) -> FailureJson {
    FailureJson {
        uid: failure.uid.as_str().to_owned(),
        call: failure.call.to_string(),
        reason: failure.reason.as_deref().map(str::to_owned),
        at: rfc3339_millis(failure.at),
    }
}

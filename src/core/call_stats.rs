//! What the join of call outcomes decided ([`CallRecord`]) and the admin
//! API's view of it over a window ([`CallSummary`], merged over nodes).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::call_report::{CallPath, CallResult};
use super::command::Uid;
use super::ids::DoorKind;

/// Most failures a summary lists.
pub const RECENT_FAILURES: usize = 20;

/// What the join decided about one call: its outcome, or its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// The uid the call was made under.
    pub uid: Uid,
    /// The client's id for the attempt.
    pub call: Arc<str>,
    /// `Connected` if both sides said so, `Failed` if either did; `Closed`
    /// for the record of a call's end.
    pub result: CallResult,
    /// `Relay` if either side's selected pair used the relay, else the
    /// first side's path.
    pub path: Option<CallPath>,
    /// The longer of the two sides' setup times.
    pub setup_ms: Option<u64>,
    /// How long the call lasted (its end's record).
    pub duration_ms: Option<u64>,
    /// Why it failed (the first side's reason that gave one).
    pub reason: Option<Arc<str>>,
    /// Only one side reported within the join window (`--call-join-window`).
    pub one_sided: bool,
    /// The web and app sides' doors, where they reported.
    pub doors: (Option<DoorKind>, Option<DoorKind>),
    /// When it was decided.
    pub at: SystemTime,
}

/// Calls decided by one door pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PairCounts {
    /// Calls decided.
    pub total: usize,
    /// Of them connected.
    pub connected: usize,
    /// Of them failed.
    pub failed: usize,
}

/// A failed call, for the admin API's list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallFailure {
    /// The uid.
    pub uid: Uid,
    /// The client's id for the attempt.
    pub call: Arc<str>,
    /// Why, as a side said.
    pub reason: Option<Arc<str>>,
    /// When it was decided.
    pub at: SystemTime,
}

/// The calls decided (outcomes, not ends) on one node or, merged, on every
/// node, within a window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallSummary {
    /// Calls decided.
    pub total: usize,
    /// Of them connected.
    pub connected: usize,
    /// Of them failed.
    pub failed: usize,
    /// Of them on the TURN relay.
    pub relayed: usize,
    /// Every setup time given, in ms (percentiles are taken after merging).
    pub setup_ms: Vec<u64>,
    /// By `web door/app door` (`none` for a side that did not report).
    pub by_door_pair: BTreeMap<String, PairCounts>,
    /// The latest failures, newest first.
    pub recent_failures: Vec<CallFailure>,
}

impl CallSummary {
    /// The summary of `records` (outcomes are counted; ends are not).
    pub fn of<'a>(records: impl Iterator<Item = &'a CallRecord>) -> CallSummary {
        let mut summary = CallSummary::default();
        for record in records {
            let failed = match record.result {
                CallResult::Connected => false,
                CallResult::Failed => true,
                CallResult::Closed => continue,
            };
            summary.total += 1;
            let pair = summary
                .by_door_pair
                .entry(door_pair(record.doors))
                .or_default();
            pair.total += 1;
            if failed {
                summary.failed += 1;
                pair.failed += 1;
                summary.recent_failures.push(CallFailure {
                    uid: record.uid.clone(),
                    call: Arc::clone(&record.call),
                    reason: record.reason.clone(),
                    at: record.at,
                });
            } else {
                summary.connected += 1;
                pair.connected += 1;
            }
            if record.path == Some(CallPath::Relay) {
                summary.relayed += 1;
            }
            summary.setup_ms.extend(record.setup_ms);
        }
        summary.keep_latest_failures();
        summary
    }

    /// Adds another node's summary to this one.
    pub fn merge(&mut self, other: CallSummary) {
        self.total += other.total;
        self.connected += other.connected;
        self.failed += other.failed;
        self.relayed += other.relayed;
        self.setup_ms.extend(other.setup_ms);
        for (pair, counts) in other.by_door_pair {
            let mine = self.by_door_pair.entry(pair).or_default();
            mine.total += counts.total;
            mine.connected += counts.connected;
            mine.failed += counts.failed;
        }
        self.recent_failures.extend(other.recent_failures);
        self.keep_latest_failures();
    }

    /// The share of decided calls that went through the relay (0 with none).
    pub fn relay_share(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.relayed as f64 / self.total as f64
        }
    }

    /// The setup time below which `quantile` (0..=1) of the calls fall
    /// (nearest rank), if any gave one.
    pub fn setup_quantile(&self, quantile: f64) -> Option<u64> {
        let mut sorted = self.setup_ms.clone();
        sorted.sort_unstable();
        let rank = (quantile.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
        sorted.get(rank.saturating_sub(1)).copied()
    }

    fn keep_latest_failures(&mut self) {
        self.recent_failures
            .sort_by_key(|failure| std::cmp::Reverse(failure.at));
        self.recent_failures.truncate(RECENT_FAILURES);
    }
}

/// `web door/app door`, `none` for a side that did not report.
fn door_pair((web, app): (Option<DoorKind>, Option<DoorKind>)) -> String {
    let name = |door: Option<DoorKind>| door.map_or("none", DoorKind::as_str);
    format!("{}/{}", name(web), name(app))
}

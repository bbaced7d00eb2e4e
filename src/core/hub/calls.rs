//! The join of call outcomes: the two sides' `callreport`s of one call
//! (by uid and call id) become one [`CallRecord`] (docs/PROTOCOL.md,
//! *Call outcomes*).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::core::call_report::{CallPath, CallReport, CallResult};
use crate::core::call_stats::{CallRecord, CallSummary};
use crate::core::command::{Role, Uid};
use crate::core::ids::DoorKind;
use crate::sync::lock;
use crate::telemetry::metrics;

use super::Shared;

/// Most calls waiting for their second report at once; past it the oldest
/// is recorded one-sided early (docs/OPERATIONS.md, *Call outcomes*).
pub const MAX_WAITING_CALLS: usize = 65_536;
/// Most decided calls a node keeps for the admin API's window; past it the
/// oldest are forgotten (the metrics still count them).
pub const MAX_KEPT_RECORDS: usize = 10_000;

/// The calls this node decided lately, oldest first, for the admin API.
#[derive(Debug, Default)]
pub(super) struct CallHistory {
    records: VecDeque<CallRecord>,
}

impl CallHistory {
    fn keep(&mut self, record: &CallRecord) {
        if record.result == CallResult::Closed {
            return;
        }
        if self.records.len() >= MAX_KEPT_RECORDS {
            self.records.pop_front();
        }
        self.records.push_back(record.clone());
    }

    /// The summary of the calls decided within `window` of now.
    fn summary(&self, window: Duration) -> CallSummary {
        let since = SystemTime::now()
            .checked_sub(window)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        CallSummary::of(self.records.iter().filter(|record| record.at >= since))
    }
}

/// One side's report, as kept while the other side's is awaited.
#[derive(Clone, Debug)]
struct SideReport {
    report: CallReport,
    door: DoorKind,
}

/// A call waiting for its second report.
#[derive(Debug)]
struct Waiting {
    web: Option<SideReport>,
    app: Option<SideReport>,
    since: Instant,
}

/// The join: reports wait here by (uid, call) until the other side's
/// arrives or the join window passes.
#[derive(Debug)]
pub struct CallBook {
    /// How long one side's report waits for the other's before it is
    /// recorded alone (one-sided).
    window: Duration,
    waiting: HashMap<(Uid, Arc<str>), Waiting>,
    /// Calls in the order they started waiting, for expiry and the bound.
    order: VecDeque<((Uid, Arc<str>), Instant)>,
    /// Calls whose end was recorded in the last window: the other side's
    /// `closed` is not a second end.
    ended: HashMap<(Uid, Arc<str>), Instant>,
    ended_order: VecDeque<((Uid, Arc<str>), Instant)>,
}

impl CallBook {
    /// An empty book whose reports wait `window` for their other side.
    pub fn new(window: Duration) -> CallBook {
        CallBook {
            window,
            waiting: HashMap::new(),
            order: VecDeque::new(),
            ended: HashMap::new(),
            ended_order: VecDeque::new(),
        }
    }

    /// Takes one side's report; returns the records it decides (none while
    /// the other side's outcome is awaited).
    pub fn report(
        &mut self,
        uid: &Uid,
        role: Role,
        door: DoorKind,
        report: CallReport,
        now: Instant,
    ) -> Vec<CallRecord> {
        let mut decided = Vec::new();
        if report.result == CallResult::Closed {
            // A call's end is recorded from the report that says so (its
            // outcome, if still awaited, is decided by what is in).
            let key = (uid.clone(), Arc::clone(&report.call));
            if let Some(waiting) = self.waiting.remove(&key) {
                decided.push(join(uid, &report.call, waiting, true));
            }
            if self.ended.contains_key(&key) {
                return decided;
            }
            if self.ended.len() >= MAX_WAITING_CALLS {
                self.forget_oldest_end();
            }
            self.ended.insert(key.clone(), now);
            self.ended_order.push_back((key, now));
            let side = SideReport { report, door };
            decided.push(ended(uid, role, &side));
            return decided;
        }
        if self.waiting.len() >= MAX_WAITING_CALLS {
            metrics::calls_waiting_full();
            decided.extend(self.expire_oldest());
        }
        if self.order.len() >= 2 * MAX_WAITING_CALLS {
            // Joined calls leave `order` lazily (when expiry reaches them);
            // at a high call rate that could outgrow the bound: drop them.
            let waiting = &self.waiting;
            self.order
                .retain(|(key, since)| waiting.get(key).is_some_and(|w| w.since == *since));
        }
        let key = (uid.clone(), Arc::clone(&report.call));
        let waiting = self.waiting.entry(key.clone()).or_insert_with(|| {
            self.order.push_back((key.clone(), now));
            Waiting {
                web: None,
                app: None,
                since: now,
            }
        });
        let slot = match role {
            Role::Web => &mut waiting.web,
            Role::App => &mut waiting.app,
        };
        // A side's first outcome stands; a repeat is ignored.
        slot.get_or_insert(SideReport { report, door });
        if waiting.web.is_some()
            && waiting.app.is_some()
            && let Some(waiting) = self.waiting.remove(&key)
        {
            decided.push(join(uid, &key.1, waiting, false));
        }
        decided
    }

    /// Records alone every call whose second report did not come within
    /// the window of the first.
    pub fn expire(&mut self, now: Instant) -> Vec<CallRecord> {
        let mut decided = Vec::new();
        while let Some((_, since)) = self.order.front() {
            if now.saturating_duration_since(*since) < self.window {
                break;
            }
            decided.extend(self.expire_oldest());
        }
        while self
            .ended_order
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= self.window)
        {
            self.forget_oldest_end();
        }
        decided
    }

    fn forget_oldest_end(&mut self) {
        if let Some((key, at)) = self.ended_order.pop_front()
            && self.ended.get(&key) == Some(&at)
        {
            self.ended.remove(&key);
        }
    }

    /// Calls waiting for their second report.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    fn expire_oldest(&mut self) -> Option<CallRecord> {
        while let Some((key, since)) = self.order.pop_front() {
            // An entry joined (or ended) since has left `waiting`, and a
            // call id reused later waits under a newer `since`.
            if self.waiting.get(&key).is_some_and(|w| w.since == since) {
                let waiting = self.waiting.remove(&key)?;
                return Some(join(&key.0, &key.1, waiting, true));
            }
        }
        None
    }
}

impl Shared {
    /// Joins one side's `callreport` (checked, from a registered session
    /// here, or from an app session on another node whose web session is
    /// here) and publishes what it decides.
    pub(super) fn join_call(&self, uid: &Uid, role: Role, door: DoorKind, report: CallReport) {
        let records = lock(&self.calls).report(uid, role, door, report, Instant::now());
        self.publish(&records);
    }

    /// The summary of the calls this node decided within `window`.
    pub(super) fn calls_here(&self, window: Duration) -> CallSummary {
        lock(&self.call_history).summary(window)
    }

    /// Records alone the calls whose second report is overdue (run once a
    /// second by the hub's upkeep).
    pub(super) fn expire_calls(&self) {
        let (records, waiting) = {
            let mut book = lock(&self.calls);
            (book.expire(Instant::now()), book.waiting())
        };
        metrics::calls_waiting(waiting);
        self.publish(&records);
    }

    /// A record's metrics, and its place in the history.
    fn publish(&self, records: &[CallRecord]) {
        if records.is_empty() {
            return;
        }
        let mut history = lock(&self.call_history);
        for record in records {
            history.keep(record);
            metrics_of(record);
            if let Some(hooks) = &self.config.hooks {
                hooks.emit_call(record);
            }
        }
    }
}

/// A record's metrics.
fn metrics_of(record: &CallRecord) {
    let path = record.path.map_or("none", CallPath::as_str);
    match record.result {
        CallResult::Connected | CallResult::Failed => metrics::call_decided(
            record.result.as_str(),
            path,
            record.setup_ms.map(Duration::from_millis),
        ),
        CallResult::Closed => {
            if let Some(ms) = record.duration_ms {
                metrics::call_ended(Duration::from_millis(ms));
            }
        }
    }
}

/// One record from what the two sides (or one) said.
fn join(uid: &Uid, call: &Arc<str>, waiting: Waiting, alone: bool) -> CallRecord {
    let sides = [waiting.web.as_ref(), waiting.app.as_ref()];
    let reports = || sides.iter().flatten().map(|side| &side.report);
    let failed = reports().any(|r| r.result == CallResult::Failed);
    let relayed = reports().any(|r| r.path == Some(CallPath::Relay));
    CallRecord {
        uid: uid.clone(),
        call: Arc::clone(call),
        result: if failed {
            CallResult::Failed
        } else {
            CallResult::Connected
        },
        path: if relayed {
            Some(CallPath::Relay)
        } else {
            reports().find_map(|r| r.path)
        },
        setup_ms: reports().filter_map(|r| r.setup_ms).max(),
        duration_ms: None,
        reason: reports().find_map(|r| r.reason.clone()),
        one_sided: alone && sides.iter().any(Option::is_none),
        doors: (
            waiting.web.as_ref().map(|side| side.door),
            waiting.app.as_ref().map(|side| side.door),
        ),
        at: SystemTime::now(),
    }
}

/// The record of a call's end, from the side that said it closed.
fn ended(uid: &Uid, role: Role, side: &SideReport) -> CallRecord {
    let door = Some(side.door);
    CallRecord {
        uid: uid.clone(),
        call: Arc::clone(&side.report.call),
        result: CallResult::Closed,
        path: side.report.path,
        setup_ms: side.report.setup_ms,
        duration_ms: side.report.duration_ms,
        reason: None,
        one_sided: true,
        doors: match role {
            Role::Web => (door, None),
            Role::App => (None, door),
        },
        at: SystemTime::now(),
    }
}

#[cfg(test)]
mod tests;

//! What every side saw, and the chaos report made from it: every numbered
//! message is sent once by its side and counted at its peer, so what was
//! lost, duplicated or refused, and how long each pair took to relay again
//! after each fault, follow from the two sides' records.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// How the server answered one message.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// No answer yet (or the connection went before it came).
    Pending,
    /// `ack`: the server took it.
    Acked,
    /// `error` with this code: the server did not take it.
    Refused(String),
    /// Its session was lost before an answer: it was never re-sent.
    Unanswered,
}

/// One message a side sent.
#[derive(Clone, Debug)]
struct Sent {
    at_ms: u64,
    outcome: Outcome,
}

/// Everything one side saw.
#[derive(Debug, Default)]
pub struct SideRecord {
    /// By message number − 1.
    sent: Vec<Sent>,
    /// The peer's messages: number → when first delivered.
    received: HashMap<u64, u64>,
    /// The peer's messages delivered again: (number, when).
    duplicates: Vec<(u64, u64)>,
    /// When a `byebye` arrived.
    pub byebyes: Vec<u64>,
    /// When a resume failed and the side registered afresh.
    pub sessions_lost: Vec<u64>,
    /// (since when, node): the node holding the session, from its token.
    nodes: Vec<(u64, String)>,
    /// What went wrong outside the messages, counted: `error`s that answered
    /// no message (by code), refused resumes and registrations (by code),
    /// failed connections (by door and error).
    pub other_errors: BTreeMap<String, u64>,
    pub connections: u64,
    pub connections_registered: u64,
    pub connect_failures: u64,
    /// Connections this side cut in a network drop.
    pub cut: u64,
    /// `reconnect` events (a node draining).
    pub reconnects: u64,
}

impl SideRecord {
    /// Message `n` was sent at `at_ms`.
    pub fn sent(&mut self, n: u64, at_ms: u64) {
        debug_assert_eq!(self.sent.len() as u64 + 1, n);
        self.sent.push(Sent {
            at_ms,
            outcome: Outcome::Pending,
        });
    }

    /// Counts one failure outside the messages, by its kind.
    pub fn count(&mut self, kind: String) {
        *self.other_errors.entry(kind).or_default() += 1;
    }

    /// The server answered message `n`.
    pub fn answer(&mut self, n: u64, outcome: Outcome) {
        if let Some(sent) = n
            .checked_sub(1)
            .and_then(|index| self.sent.get_mut(index as usize))
        {
            sent.outcome = outcome;
        }
    }

    /// The peer's message `n` arrived at `at_ms`.
    pub fn received(&mut self, n: u64, at_ms: u64) {
        match self.received.entry(n) {
            std::collections::hash_map::Entry::Vacant(first) => {
                first.insert(at_ms);
            }
            std::collections::hash_map::Entry::Occupied(_) => self.duplicates.push((n, at_ms)),
        }
    }

    /// The session is now held by the node its token names (`<node>.…`).
    pub fn note_node(&mut self, at_ms: u64, token: Option<&str>) {
        let Some(node) = token
            .and_then(|token| token.split_once('.'))
            .map(|(node, _)| node)
        else {
            return;
        };
        if self.nodes.last().is_none_or(|(_, last)| last != node) {
            self.nodes.push((at_ms, node.to_owned()));
        }
    }

    fn node_at(&self, at_ms: u64) -> Option<&str> {
        self.nodes
            .iter()
            .rev()
            .find(|(since, _)| *since <= at_ms)
            .map(|(_, node)| node.as_str())
    }
}

/// A fault the orchestrator injected.
#[derive(Clone, Debug)]
pub struct Fault {
    pub kind: String,
    /// The gateway node it hit (its id), if it hit one.
    pub node: Option<String>,
    pub at_ms: u64,
    /// When recovery is measured from: the injection, and each further
    /// step of a many-step fault (each node of a rolling restart).
    pub marks: Vec<u64>,
    /// When a Redis fault's replica was seen promoted.
    pub failover_at_ms: Option<u64>,
}

/// The totals of the report, over the run or within one fault.
#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub sent: u64,
    pub delivered: u64,
    /// Acknowledged, never delivered, and the peer's session still alive.
    pub lost: u64,
    /// Acknowledged, never delivered, to a session that ended with the
    /// node holding it (`kill -9`): the call ended, its peer heard `byebye`.
    pub ended_with_session: u64,
    pub duplicated: u64,
    /// Refused with an `error`, by code, and never delivered.
    pub refused: BTreeMap<String, u64>,
    /// Refused with an `error` (`UNAVAILABLE`: no answer in time) and
    /// delivered all the same, once: a client that re-sends it makes a
    /// duplicate of its own.
    pub refused_but_delivered: u64,
    /// Never answered and never delivered (the connection went first and
    /// the session with it): the client knows it has no answer.
    pub unanswered: u64,
    pub byebye: u64,
    pub sessions_lost: u64,
}

/// One fault's line of the report.
#[derive(Debug, Serialize)]
pub struct FaultReport {
    pub kind: String,
    pub node: Option<String>,
    pub at_s: f64,
    pub recovery_p50_ms: Option<u64>,
    pub recovery_p99_ms: Option<u64>,
    pub recovery_max_ms: Option<u64>,
    /// A Redis fault: when the replica was seen promoted, and the pairs'
    /// recovery counted from then (what the gateway adds to Redis's own
    /// failover time).
    pub failover_at_s: Option<f64>,
    pub recovery_after_failover_p50_ms: Option<u64>,
    pub recovery_after_failover_p99_ms: Option<u64>,
    pub recovery_after_failover_max_ms: Option<u64>,
    /// Pairs that did not relay both ways again before the next fault.
    pub unrecovered: u64,
    #[serde(flatten)]
    pub totals: Totals,
}

/// A message delivered twice.
#[derive(Debug, Serialize)]
pub struct Duplicate {
    pub pair: usize,
    /// `"web"` (sent by the web side) or `"app"`.
    pub from: &'static str,
    pub n: u64,
    pub at_s: f64,
    /// The fault it fell in (its index in `faults`), if any.
    pub fault: Option<usize>,
}

/// The driver's report.
#[derive(Debug, Serialize)]
pub struct Report {
    pub pairs: usize,
    pub duration_s: f64,
    #[serde(flatten)]
    pub totals: Totals,
    pub unexpected_byebye: u64,
    pub unrecovered_sessions: u64,
    pub faults: Vec<FaultReport>,
    /// Every duplicate (at most 1,000 listed).
    pub duplicates: Vec<Duplicate>,
    pub connections: u64,
    pub connect_failures: u64,
    pub cut_connections: u64,
    pub reconnect_events: u64,
    pub other_errors: BTreeMap<String, u64>,
}

/// The index of the fault whose window holds `at_ms` (from its injection
/// to the next one's).
fn fault_at(faults: &[Fault], at_ms: u64) -> Option<usize> {
    faults.iter().rposition(|fault| fault.at_ms <= at_ms)
}

fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// When a message sent at or after `mark` first arrived, one way.
fn first_delivery_after(sender: &SideRecord, receiver: &SideRecord, mark: u64) -> Option<u64> {
    let first = sender.sent.partition_point(|sent| sent.at_ms < mark);
    (first..sender.sent.len())
        .filter_map(|index| receiver.received.get(&(index as u64 + 1)).copied())
        .min()
}

/// How long the pair took to relay both ways again after each of `marks`
/// (the longest); `None` if it never did before `until`.
fn pair_recovery(web: &SideRecord, app: &SideRecord, marks: &[u64], until: u64) -> Option<u64> {
    let mut longest = 0;
    for &mark in marks {
        let both = first_delivery_after(web, app, mark)?.max(first_delivery_after(app, web, mark)?);
        if both > until {
            return None;
        }
        longest = longest.max(both - mark);
    }
    Some(longest)
}

/// Whether a `byebye` heard at `at_ms` by the side whose peer is `peer` is
/// one a fault explains: the peer's session was on a node killed shortly before.
fn byebye_expected(faults: &[Fault], peer: &SideRecord, at_ms: u64) -> bool {
    faults.iter().any(|fault| {
        fault.kind == "kill_gateway"
            && fault.at_ms <= at_ms
            && at_ms - fault.at_ms <= 60_000
            && fault
                .node
                .as_deref()
                .is_some_and(|node| peer.node_at(fault.at_ms) == Some(node))
    })
}

/// Counts one direction of one pair into the run's and the faults' totals.
fn count_direction(
    sender: &SideRecord,
    receiver: &SideRecord,
    faults: &[Fault],
    totals: &mut Totals,
    by_fault: &mut [Totals],
) {
    for (index, sent) in sender.sent.iter().enumerate() {
        let n = index as u64 + 1;
        let window = fault_at(faults, sent.at_ms);
        let count = |totals: &mut Totals| {
            totals.sent += 1;
            if receiver.received.contains_key(&n) {
                totals.delivered += 1;
                if matches!(sent.outcome, Outcome::Refused(_)) {
                    totals.refused_but_delivered += 1;
                }
                return;
            }
            match &sent.outcome {
                Outcome::Acked => {
                    let ended = receiver.sessions_lost.iter().any(|&at| at >= sent.at_ms)
                        || sender.byebyes.iter().any(|&at| at >= sent.at_ms);
                    if ended {
                        totals.ended_with_session += 1;
                    } else {
                        totals.lost += 1;
                    }
                }
                Outcome::Refused(code) => *totals.refused.entry(code.clone()).or_default() += 1,
                Outcome::Pending | Outcome::Unanswered => totals.unanswered += 1,
            }
        };
        count(totals);
        if let Some(fault) = window {
            count(&mut by_fault[fault]);
        }
    }
    totals.duplicated += receiver.duplicates.len() as u64;
    for &(_, at) in &receiver.duplicates {
        if let Some(fault) = fault_at(faults, at) {
            by_fault[fault].duplicated += 1;
        }
    }
}

/// The report over every pair's (web, app) records.
pub fn report(pairs: &[(SideRecord, SideRecord)], faults: &[Fault], end_ms: u64) -> Report {
    let mut totals = Totals::default();
    let mut by_fault: Vec<Totals> = faults.iter().map(|_| Totals::default()).collect();
    let mut recoveries: Vec<Vec<u64>> = faults.iter().map(|_| Vec::new()).collect();
    let mut after_failover: Vec<Vec<u64>> = faults.iter().map(|_| Vec::new()).collect();
    let mut unrecovered_by_fault = vec![0u64; faults.len()];
    let mut report = Report {
        pairs: pairs.len(),
        duration_s: end_ms as f64 / 1000.0,
        totals: Totals::default(),
        unexpected_byebye: 0,
        unrecovered_sessions: 0,
        faults: Vec::new(),
        duplicates: Vec::new(),
        connections: 0,
        connect_failures: 0,
        cut_connections: 0,
        reconnect_events: 0,
        other_errors: BTreeMap::new(),
    };
    for (pair, (web, app)) in pairs.iter().enumerate() {
        count_direction(web, app, faults, &mut totals, &mut by_fault);
        count_direction(app, web, faults, &mut totals, &mut by_fault);
        for (side, peer, from) in [(web, app, "app"), (app, web, "web")] {
            for &(n, at) in &side.duplicates {
                if report.duplicates.len() < 1000 {
                    report.duplicates.push(Duplicate {
                        pair,
                        from,
                        n,
                        at_s: at as f64 / 1000.0,
                        fault: fault_at(faults, at),
                    });
                }
            }
            for &at in &side.byebyes {
                if !byebye_expected(faults, peer, at) {
                    report.unexpected_byebye += 1;
                }
                totals.byebye += 1;
                if let Some(fault) = fault_at(faults, at) {
                    by_fault[fault].byebye += 1;
                }
            }
            for &at in &side.sessions_lost {
                totals.sessions_lost += 1;
                if let Some(fault) = fault_at(faults, at) {
                    by_fault[fault].sessions_lost += 1;
                }
            }
            report.connections += side.connections;
            report.connect_failures += side.connect_failures;
            report.cut_connections += side.cut;
            report.reconnect_events += side.reconnects;
            for (code, count) in &side.other_errors {
                *report.other_errors.entry(code.clone()).or_default() += count;
            }
        }
        for (index, fault) in faults.iter().enumerate() {
            let until = faults.get(index + 1).map_or(end_ms, |next| next.at_ms);
            match pair_recovery(web, app, &fault.marks, until) {
                Some(ms) => recoveries[index].push(ms),
                None => unrecovered_by_fault[index] += 1,
            }
            if let Some(ms) = fault
                .failover_at_ms
                .and_then(|at| pair_recovery(web, app, &[at], until))
            {
                after_failover[index].push(ms);
            }
        }
        let last_mark = faults
            .iter()
            .flat_map(|fault| fault.marks.iter())
            .max()
            .copied();
        if pair_recovery(web, app, &[last_mark.unwrap_or(0)], end_ms).is_none() {
            report.unrecovered_sessions += 1;
        }
    }
    for (index, (fault, fault_totals)) in faults.iter().zip(by_fault).enumerate() {
        let sorted = &mut recoveries[index];
        sorted.sort_unstable();
        let failover = &mut after_failover[index];
        failover.sort_unstable();
        report.faults.push(FaultReport {
            kind: fault.kind.clone(),
            node: fault.node.clone(),
            at_s: fault.at_ms as f64 / 1000.0,
            recovery_p50_ms: percentile(sorted, 0.50),
            recovery_p99_ms: percentile(sorted, 0.99),
            recovery_max_ms: sorted.last().copied(),
            failover_at_s: fault.failover_at_ms.map(|at| at as f64 / 1000.0),
            recovery_after_failover_p50_ms: percentile(failover, 0.50),
            recovery_after_failover_p99_ms: percentile(failover, 0.99),
            recovery_after_failover_max_ms: failover.last().copied(),
            unrecovered: unrecovered_by_fault[index],
            totals: fault_totals,
        });
    }
    report.totals = totals;
    report
}

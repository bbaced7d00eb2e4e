//! Prometheus metrics: what the gateway is doing, for operators.
//!
//! One process-wide recorder is installed on first use; `/metrics` renders
//! it. The names below are the contract listed in docs/OPERATIONS.md.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Open connections by door and role (`none` before `register`).
pub const CONNECTIONS: &str = "signalgate_connections";
/// Sessions held away, waiting for a resume.
pub const AWAY_SESSIONS: &str = "signalgate_away_sessions";
/// Sessions not ended (attached or away).
pub const OPEN_SESSIONS: &str = "signalgate_open_sessions";
/// Uids with both roles present.
pub const PAIRS: &str = "signalgate_pairs";
/// Relayed events by event name and the sender's door.
pub const RELAYED: &str = "signalgate_relayed_events_total";
/// `error` events sent, by code.
pub const ERRORS: &str = "signalgate_errors_total";
/// Ended sessions (and drops into the away state), by reason.
pub const DISCONNECTS: &str = "signalgate_disconnects_total";
/// Time from a relay's arrival to the peer's connection taking it for writing.
pub const RELAY_LATENCY: &str = "signalgate_relay_latency_seconds";
/// `callreport`s taken, by the reporting side's role and door and its result.
pub const CALL_REPORTS: &str = "signalgate_call_reports_total";
/// Calls' outcomes (one per call: both sides' reports joined, or one side's
/// alone), by result (`connected`, `failed`) and path.
pub const CALLS: &str = "signalgate_calls_total";
/// Time from first offer or answer to the outcome, by path.
pub const CALL_SETUP: &str = "signalgate_call_setup_seconds";
/// How long calls lasted, from their `closed` reports.
pub const CALL_DURATION: &str = "signalgate_call_duration_seconds";
/// Calls waiting for their second report.
pub const CALLS_WAITING: &str = "signalgate_calls_waiting";
/// Calls recorded one-sided early because too many were waiting.
pub const CALLS_WAITING_FULL: &str = "signalgate_calls_waiting_full_total";
/// Successful resumes.
pub const RESUMES: &str = "signalgate_resumes_total";
/// Failed resumes, by reason.
pub const RESUME_FAILURES: &str = "signalgate_resume_failures_total";
/// TURN credentials minted for sessions.
pub const TURN_CREDENTIALS: &str = "signalgate_turn_credentials_issued_total";
/// Events replayed by resumes.
pub const REPLAYED: &str = "signalgate_replayed_events_total";
/// 1 while the pairing registry can serve registrations (always with the
/// in-memory one; with Redis, while Redis is reachable).
pub const REGISTRY_AVAILABLE: &str = "signalgate_registry_available";
/// Frames exchanged with other nodes over Redis, by kind and direction.
pub const CLUSTER_FRAMES: &str = "signalgate_cluster_frames_total";
/// Frames from other nodes dropped because the node's Redis Cluster inbox
/// was full.
pub const CLUSTER_FRAMES_DROPPED: &str = "signalgate_cluster_frames_dropped_total";
/// Frames from another node this node could not read (an unknown kind,
/// role, code or outcome: a node of another version, or corruption).
pub const CLUSTER_FRAMES_MALFORMED: &str = "signalgate_cluster_frames_malformed_total";
/// Frames from another node dropped because the same frame (same asker and
/// token) was handled before: a Redis command retried across a failover.
pub const CLUSTER_FRAMES_DUPLICATE: &str = "signalgate_cluster_frames_duplicate_total";
/// Events not sent again after a peer's node seemed not to listen, because
/// Redis named the same route (the first copy may have arrived).
pub const CLUSTER_RESENDS_WITHHELD: &str = "signalgate_cluster_resends_withheld_total";
/// Hand-overs answered a second time with the same export: the first
/// answer to the taking node came too late, and the client asked again.
pub const CLUSTER_HANDED_AGAIN: &str = "signalgate_cluster_handovers_repeated_total";
/// Times a node built its Redis Cluster command connection again because
/// commands kept failing (the slot map read afresh).
pub const REDIS_REBUILDS: &str = "signalgate_redis_connection_rebuilds_total";
/// Probes a node published to its own channel on a Redis Cluster that no
/// subscriber heard: its subscription sat on a primary that was replaced.
pub const CLUSTER_PROBES_UNHEARD: &str = "signalgate_cluster_probes_unheard_total";
/// Times a node heard its own probes twice on a Redis Cluster (subscribed
/// to its channel on two nodes of the shard) and subscribed afresh.
pub const CLUSTER_SUBSCRIPTIONS_DOUBLED: &str = "signalgate_cluster_subscriptions_doubled_total";
/// Connections refused before a session existed, by reason.
pub const REFUSED: &str = "signalgate_refused_connections_total";
/// Connections closed for not making progress, by reason.
pub const STALLED: &str = "signalgate_stalled_connections_total";

/// Webhook deliveries by outcome (`delivered`, `retried`, `failed`).
pub const WEBHOOK_DELIVERIES: &str = "signalgate_webhook_deliveries_total";
/// Webhook events dropped, by reason (`queue_full`, `attempts_exhausted`).
pub const WEBHOOK_DROPPED: &str = "signalgate_webhook_dropped_total";
/// Webhook events waiting to be delivered (queued or being retried).
pub const WEBHOOK_QUEUE_DEPTH: &str = "signalgate_webhook_queue_depth";
/// Time from a webhook event to its successful delivery.
pub const WEBHOOK_LATENCY: &str = "signalgate_webhook_delivery_seconds";
/// JWKS fetches by outcome (`ok`, `failed`).
pub const JWKS_FETCHES: &str = "signalgate_jwks_fetches_total";

/// Relay latency buckets: 50 µs to 1 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
/// A call's setup: ICE and DTLS take from a few hundred ms to tens of seconds.
const CALL_SETUP_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0];
/// A call's length: seconds to hours.
const CALL_DURATION_BUCKETS: &[f64] = &[
    1.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide recorder's render handle (installed on first call).
/// `None` if another recorder was installed first.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(RELAY_LATENCY.to_owned()), LATENCY_BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Full(CALL_SETUP.to_owned()), CALL_SETUP_BUCKETS)
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full(CALL_DURATION.to_owned()),
                    CALL_DURATION_BUCKETS,
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .as_ref()
}

/// Drains histogram samples into their buckets now and then: the recorder
/// keeps raw samples until then, so without this they would pile up
/// whenever nobody scrapes `/metrics`.
pub async fn run_upkeep(shutdown: tokio_util::sync::CancellationToken) {
    let Some(handle) = handle() else { return };
    let mut ticks = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = ticks.tick() => handle.run_upkeep(),
            () = shutdown.cancelled() => return,
        }
    }
}

/// Counts a frame sent to (`out`) or received from (`in`) another node.
pub fn cluster_frame(kind: &'static str, direction: &'static str) {
    counter!(CLUSTER_FRAMES, "kind" => kind, "direction" => direction).increment(1);
}

/// A frame from another node dropped: the node's Redis Cluster inbox was
/// full.
pub fn cluster_frame_dropped() {
    counter!(CLUSTER_FRAMES_DROPPED).increment(1);
}

/// A frame from another node that this node could not read.
pub fn cluster_frame_malformed() {
    counter!(CLUSTER_FRAMES_MALFORMED).increment(1);
}

/// The Redis Cluster command connection was built again.
pub fn redis_connection_rebuilt() {
    counter!(REDIS_REBUILDS).increment(1);
}

/// A node's probe of its own channel found no subscriber.
pub fn cluster_probe_unheard() {
    counter!(CLUSTER_PROBES_UNHEARD).increment(1);
}

/// This node found itself subscribed to its channel twice.
pub fn cluster_subscription_doubled() {
    counter!(CLUSTER_SUBSCRIPTIONS_DOUBLED).increment(1);
}

/// A frame from another node handled before, dropped.
pub fn cluster_frame_duplicate() {
    counter!(CLUSTER_FRAMES_DUPLICATE).increment(1);
}

/// An event not sent again to a peer whose node seemed not to listen,
/// because the route Redis gave was the one already tried.
pub fn cluster_resend_withheld() {
    counter!(CLUSTER_RESENDS_WITHHELD).increment(1);
}

/// A hand-over answered again with the export its first answer carried.
pub fn cluster_handed_again() {
    counter!(CLUSTER_HANDED_AGAIN).increment(1);
}

/// The gauges read from the hub at scrape time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gauges {
    /// Sessions not ended.
    pub open_sessions: usize,
    /// Sessions held away for a resume.
    pub away_sessions: usize,
    /// Uids with both roles present.
    pub pairs: usize,
    /// Whether the registry can serve registrations.
    pub registry_available: bool,
}

/// Renders every metric in the Prometheus text format, with `gauges`.
pub fn render(gauges: Gauges) -> String {
    gauge!(REGISTRY_AVAILABLE).set(if gauges.registry_available { 1.0 } else { 0.0 });
    gauge!(AWAY_SESSIONS).set(gauges.away_sessions as f64);
    gauge!(OPEN_SESSIONS).set(gauges.open_sessions as f64);
    gauge!(PAIRS).set(gauges.pairs as f64);
    handle().map(PrometheusHandle::render).unwrap_or_default()
}

/// A label value known ahead, for the labelled metrics on hot paths: its
/// text, and its slot among the values of its label (which picks a cached
/// handle instead of a labelled lookup, a few thousand instructions).
/// The core gives each of its doors, roles and relayed events one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label {
    /// Its place among its label's values, from 0.
    pub slot: usize,
    /// The value as exported.
    pub text: &'static str,
}

/// Slots the caches hold per label; a label value past them is looked up
/// by its labels every time.
const SLOTS: usize = 8;

/// One handle per pair of label values, made on first use.
type Handles<T> = [[OnceLock<T>; SLOTS]; SLOTS];

fn cached<T>(
    handles: &Handles<T>,
    first: usize,
    second: usize,
    make: impl FnOnce() -> T,
) -> Option<&T> {
    Some(handles.get(first)?.get(second)?.get_or_init(make))
}

/// The connection gauges: every session setup moves one three times.
static CONNECTION_GAUGES: Handles<metrics::Gauge> =
    [const { [const { OnceLock::new() }; SLOTS] }; SLOTS];

/// Moves the gauge of connections through `door` registered as `role`
/// (`none` until they register or resume) by `delta`.
fn move_connection_gauge(door: Label, role: Option<Label>, delta: f64) {
    let role_slot = role.map_or(0, |role| role.slot + 1);
    let role_text = role.map_or("none", |role| role.text);
    let make = || gauge!(CONNECTIONS, "door" => door.text, "role" => role_text);
    match cached(&CONNECTION_GAUGES, door.slot, role_slot, make) {
        Some(gauge) => gauge.increment(delta),
        None => make().increment(delta),
    }
}

/// A connection opened, or moved between roles.
pub fn connection_opened(door: Label, role: Option<Label>) {
    move_connection_gauge(door, role, 1.0);
}

/// A connection closed (or left a role).
pub fn connection_closed(door: Label, role: Option<Label>) {
    move_connection_gauge(door, role, -1.0);
}

/// The relay counters: this is on the hot path, and a labelled lookup per
/// relay costs more than the relay's own bookkeeping.
static RELAY_COUNTERS: Handles<metrics::Counter> =
    [const { [const { OnceLock::new() }; SLOTS] }; SLOTS];

/// An event (`kind`, e.g. `message`) was relayed from a session on `door`.
pub fn relayed(kind: Label, door: Label) {
    let make = || counter!(RELAYED, "event" => kind.text, "door" => door.text);
    match cached(&RELAY_COUNTERS, kind.slot, door.slot, make) {
        Some(counter) => counter.increment(1),
        None => make().increment(1),
    }
}

/// An `error` event with `code` was sent.
pub fn error_sent(code: &'static str) {
    counter!(ERRORS, "code" => code).increment(1);
}

/// A session ended, or went away.
pub fn disconnected(reason: &'static str) {
    counter!(DISCONNECTS, "reason" => reason).increment(1);
}

static RELAY_LATENCY_HISTOGRAM: OnceLock<metrics::Histogram> = OnceLock::new();

/// A session reported a call attempt's `result`.
pub fn call_reported(role: Label, door: Label, result: &'static str) {
    counter!(CALL_REPORTS, "role" => role.text, "door" => door.text, "result" => result)
        .increment(1);
}

/// A call's outcome was decided (`result` `connected` or `failed`; `path`
/// `none` when no side said), and how long it took to set up.
pub fn call_decided(result: &'static str, path: &'static str, setup: Option<Duration>) {
    counter!(CALLS, "result" => result, "path" => path).increment(1);
    if let Some(setup) = setup {
        histogram!(CALL_SETUP, "path" => path).record(setup.as_secs_f64());
    }
}

/// How many calls wait for their second report.
pub fn calls_waiting(count: usize) {
    gauge!(CALLS_WAITING).set(count as f64);
}

/// The waiting calls were at their bound: the oldest was recorded alone.
pub fn calls_waiting_full() {
    counter!(CALLS_WAITING_FULL).increment(1);
}

/// A call ended after `lasted`.
pub fn call_ended(lasted: Duration) {
    histogram!(CALL_DURATION).record(lasted.as_secs_f64());
}

/// A relayed event waited this long before its connection took it.
pub fn relay_latency(waited: Duration) {
    RELAY_LATENCY_HISTOGRAM
        .get_or_init(|| histogram!(RELAY_LATENCY))
        .record(waited.as_secs_f64());
}

/// A resume succeeded and replayed this many events.
pub fn resumed(replayed: usize) {
    counter!(RESUMES).increment(1);
    counter!(REPLAYED).increment(replayed as u64);
}

/// TURN credentials were minted for a session.
pub fn turn_credentials_issued() {
    counter!(TURN_CREDENTIALS).increment(1);
}

/// A resume failed.
pub fn resume_failed(reason: &'static str) {
    counter!(RESUME_FAILURES, "reason" => reason).increment(1);
}

/// A connection was refused before a session existed.
pub fn refused(reason: &'static str) {
    counter!(REFUSED, "reason" => reason).increment(1);
}

/// A webhook attempt ended: `delivered` (2xx), `retried` (will be tried
/// again), `failed` (the last attempt failed).
pub fn webhook_delivery(outcome: &'static str) {
    counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
}

/// A webhook event was dropped: `queue_full` or `attempts_exhausted`.
pub fn webhook_dropped(reason: &'static str) {
    counter!(WEBHOOK_DROPPED, "reason" => reason).increment(1);
}

/// Webhook events waiting now.
pub fn webhook_queue_depth(depth: usize) {
    gauge!(WEBHOOK_QUEUE_DEPTH).set(depth as f64);
}

/// A webhook event was delivered this long after it happened.
pub fn webhook_latency(took: Duration) {
    histogram!(WEBHOOK_LATENCY).record(took.as_secs_f64());
}

/// A JWKS fetch ended: `ok` or `failed`.
pub fn jwks_fetch(outcome: &'static str) {
    counter!(JWKS_FETCHES, "outcome" => outcome).increment(1);
}

/// A connection closed for not making progress: `silent` (no request
/// within its bound), `slow_body` (a polling POST's body not in time).
pub fn stalled(reason: &'static str) {
    counter!(STALLED, "reason" => reason).increment(1);
}

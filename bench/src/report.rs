//! What a run measured, how it is printed, and the server's CPU time and
//! memory read from /proc.

use std::path::Path;

use serde::Serialize;

/// What a run measured.
#[derive(Debug, Default, Serialize)]
pub struct BenchReport {
    /// The run's label.
    pub label: String,
    /// `web/app` doors, or `seed`.
    pub doors: String,
    /// Pairs set up.
    pub pairs: usize,
    /// Connections set up per second (connect + register).
    pub setup_sessions_per_second: f64,
    /// Relays per second (two per round trip).
    pub relays_per_second: f64,
    /// Messages sent by the web sides in the measured window.
    pub sent: u64,
    /// Echoes received back.
    pub received: u64,
    /// Messages sent but never echoed back.
    pub lost: u64,
    /// Round-trip latency percentiles, microseconds.
    pub rtt_p50_us: f64,
    /// 99th percentile.
    pub rtt_p99_us: f64,
    /// 99.9th percentile.
    pub rtt_p999_us: f64,
    /// Maximum.
    pub rtt_max_us: f64,
    /// Server CPU seconds per million relays.
    pub server_cpu_s_per_million_relays: Option<f64>,
    /// Server CPU microseconds per relay.
    pub server_cpu_us_per_relay: Option<f64>,
    /// Server RSS growth per connection, KiB.
    pub server_rss_kib_per_connection: Option<f64>,
    /// Server RSS after setup, MiB.
    pub server_rss_mib: Option<f64>,
    /// Server CPU microseconds per session set up (connect + register),
    /// over the setup phase: what the server itself can sustain, whether
    /// or not the load generator keeps up.
    pub server_cpu_us_per_setup: Option<f64>,
    /// The kernel's part of `server_cpu_us_per_setup` (system time).
    pub server_system_us_per_setup: Option<f64>,
    /// The kernel's part of `server_cpu_us_per_relay` (system time: the
    /// TCP stack, wake-ups, epoll); the rest is user space.
    pub server_system_us_per_relay: Option<f64>,
    /// The server's context switches per relay, summed over its threads
    /// (voluntary: it blocked, mostly in `epoll_wait`, and was woken;
    /// involuntary: preempted).
    pub server_context_switches_per_relay: Option<f64>,
}

/// A process's CPU time and memory, read from /proc.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProcessUsage {
    /// User-space CPU seconds.
    pub(crate) user_s: f64,
    /// Kernel CPU seconds spent on the process's behalf.
    pub(crate) system_s: f64,
    /// Resident set size.
    pub(crate) rss_bytes: u64,
    /// Context switches of all its threads so far.
    pub(crate) context_switches: u64,
}

impl ProcessUsage {
    fn cpu_s(&self) -> f64 {
        self.user_s + self.system_s
    }
}

/// Microseconds of (total, system) CPU per unit between two readings.
pub(crate) fn cpu_us_per(before: ProcessUsage, after: ProcessUsage, units: f64) -> (f64, f64) {
    (
        (after.cpu_s() - before.cpu_s()) * 1e6 / units,
        (after.system_s - before.system_s) * 1e6 / units,
    )
}

/// Reads a process's CPU time and RSS from /proc.
pub(crate) fn process_usage(pid: u32) -> Option<ProcessUsage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, in clock ticks (100 per second here).
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let user_ticks: f64 = fields.get(11)?.parse().ok()?;
    let system_ticks: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(ProcessUsage {
        user_s: user_ticks / 100.0,
        system_s: system_ticks / 100.0,
        rss_bytes: rss_kib * 1024,
        context_switches: context_switches(pid),
    })
}

/// Voluntary and involuntary context switches of every thread of `pid`.
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .map(|status| {
            status
                .lines()
                .filter_map(|line| {
                    line.strip_prefix("voluntary_ctxt_switches:")
                        .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
                })
                .filter_map(|count| count.trim().parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// Context switches per unit between two readings.
pub(crate) fn switches_per(before: ProcessUsage, after: ProcessUsage, units: f64) -> f64 {
    after
        .context_switches
        .saturating_sub(before.context_switches) as f64
        / units
}

/// A measured figure with `digits` decimals and its unit, or `-` when it
/// was not measured.
fn figure(value: Option<f64>, digits: usize, unit: &str) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}{unit}"))
}

/// Prints the report's one line and appends it, as JSON, to `json` when given.
pub(crate) fn finish(report: &BenchReport, json: Option<&Path>) -> anyhow::Result<()> {
    println!(
        "{label}: {doors} pairs={pairs} setup={setup:.0}/s relays={relays:.0}/s sent={sent} received={received} lost={lost} \
         rtt p50={p50:.0}us p99={p99:.0}us p99.9={p999:.0}us max={max:.0}us cpu/relay={cpu} (kernel {cpu_system}) cpu/setup={setup_cpu} (kernel {setup_system}) rss/conn={rss} switches/relay={switches}",
        label = report.label,
        doors = report.doors,
        pairs = report.pairs,
        setup = report.setup_sessions_per_second,
        relays = report.relays_per_second,
        sent = report.sent,
        received = report.received,
        lost = report.lost,
        p50 = report.rtt_p50_us,
        p99 = report.rtt_p99_us,
        p999 = report.rtt_p999_us,
        max = report.rtt_max_us,
        cpu = figure(report.server_cpu_us_per_relay, 1, "us"),
        cpu_system = figure(report.server_system_us_per_relay, 1, "us"),
        setup_cpu = figure(report.server_cpu_us_per_setup, 0, "us"),
        setup_system = figure(report.server_system_us_per_setup, 0, "us"),
        rss = figure(report.server_rss_kib_per_connection, 1, "KiB"),
        switches = figure(report.server_context_switches_per_relay, 2, ""),
    );
    if let Some(path) = json {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(file, "{}", serde_json::to_string(report)?)?;
    }
    Ok(())
}

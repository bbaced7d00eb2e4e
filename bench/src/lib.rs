//! `signalgate-bench`: a load generator for signalgate (any door, or mixed)
//! and for the seed reference server (Socket.IO, seed wire) and the PeerJS
//! server (npm `peer`, JSON over WebSocket).
//!
//! It sets up N pairs (web + app under one uid, timed as sessions per
//! second), then drives echo round trips: the web side sends `message`s,
//! the app side sends each back. Closed loop keeps `--window` messages in
//! flight per pair; open loop (`--rate`) sends on a fixed schedule and
//! measures latency from the *scheduled* send time, so a stalled server
//! cannot hide its delay. Every round trip is two relays. A client that
//! received several events at once answers them in one write
//! (`--write-each`: one write per message). Given the
//! server's pid it reads the server's CPU time and RSS from /proc.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use humantime::parse_duration;

mod endpoint;
mod peerjs;
mod report;

use endpoint::Endpoint;

pub use report::BenchReport;
use report::{ProcessUsage, cpu_us_per, process_usage};
use signalgate_client::{Client, ConnectOptions, Door, Incoming, envelope};

/// A door on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchDoor {
    /// JSON WebSocket.
    Ws,
    /// gRPC.
    Grpc,
    /// Socket.IO (Engine.IO 4, websocket transport).
    Socketio,
}

impl From<BenchDoor> for Door {
    fn from(door: BenchDoor) -> Door {
        match door {
            BenchDoor::Ws => Door::Ws,
            BenchDoor::Grpc => Door::Grpc,
            BenchDoor::Socketio => Door::SocketIo,
        }
    }
}

/// `signalgate bench` options.
#[derive(Clone, Debug, Args)]
pub struct BenchArgs {
    /// The gateway (or seed server) to load.
    #[arg(long, default_value = "127.0.0.1:3186")]
    pub target: SocketAddr,

    /// Where the app sessions connect, when not to `--target` (a second
    /// cluster node: every pair then relays across nodes).
    #[arg(long)]
    pub app_target: Option<SocketAddr>,
    /// Pairs (each is two connections).
    #[arg(long, default_value_t = 200)]
    pub pairs: usize,
    /// The web side's door.
    #[arg(long, value_enum, default_value = "ws")]
    pub web_door: BenchDoor,
    /// The app side's door.
    #[arg(long, value_enum, default_value = "ws")]
    pub app_door: BenchDoor,
    /// Closed loop: messages in flight per pair.
    #[arg(long, default_value_t = 4)]
    pub window: usize,
    /// Open loop: round trips per second in all (overrides the window).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 200)]
    pub size: usize,
    /// Measured duration.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured warm-up before the measured duration.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Only set the pairs up and hold them (idle scale), then report memory.
    #[arg(long)]
    pub idle: bool,
    /// Signaling burst: each pair exchanges an offer, an answer (~2 KB each)
    /// and `--candidates` ICE candidates each way, once.
    #[arg(long)]
    pub burst: bool,
    /// ICE candidates each way in a burst.
    #[arg(long, default_value_t = 20)]
    pub candidates: usize,
    /// The server's pid, to read its CPU time and memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Spread connections over 127.0.0.1 ..= 127.0.0.N.
    #[arg(long, default_value_t = 1)]
    pub source_ips: u8,
    /// The target is the seed reference server: Socket.IO seed wire, no
    /// `registered` or acks.
    #[arg(long)]
    pub seed: bool,
    /// The target is a PeerJS server (npm `peer`, started with the key
    /// `peerjs` at the path `/`): each side connects as its own peer id and
    /// relays to the other as `OFFER`s; nothing registers.
    #[arg(long, conflicts_with = "seed")]
    pub peerjs: bool,
    /// Write every message on its own (one write, so one TCP segment, per
    /// message). By default a client that has received several events at
    /// once answers them all in one write, as tonic's gRPC client always
    /// does; this flag measures what per-message writes cost the server.
    #[arg(long)]
    pub write_each: bool,
    /// Connections set up at once.
    #[arg(long, default_value_t = 128)]
    pub connect_concurrency: usize,
    /// Pairs set up per second at most (0: as fast as the concurrency
    /// allows). A starved host (many nodes and Redis on 2 cores) keeps up
    /// with a paced setup where a burst makes Redis miss its deadlines.
    #[arg(long, default_value_t = 0.0)]
    pub setup_rate: f64,
    /// A name for this run in the report.
    #[arg(long, default_value = "run")]
    pub label: String,
    /// Append the result as one JSON line to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn source(args: &BenchArgs, index: usize) -> Option<IpAddr> {
    (args.source_ips > 1).then(|| {
        let last = 1 + (index % usize::from(args.source_ips)) as u8;
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    })
}

type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// The next event, within 30 s; a close or an `error` fails the run.
async fn next_event(client: &mut Endpoint, side: &str) -> Result<Value, BenchError> {
    let incoming = tokio::time::timeout(Duration::from_secs(30), client.recv()).await??;
    unrefused(incoming, side)
}

async fn wait_for(client: &mut Endpoint, side: &str, name: &str) -> Result<Value, BenchError> {
    loop {
        let event = next_event(client, side).await?;
        if event["event"] == name {
            return Ok(event);
        }
    }
}

/// How long a connection (TCP and the door's handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects one side, within [`CONNECT_TIMEOUT`]: a connection a node never
/// answers fails the run, naming the side and the node, instead of holding
/// a setup slot for ever (docs/CAPACITY.md, attempt 4).
async fn connect(
    door: BenchDoor,
    target: SocketAddr,
    options: &ConnectOptions,
    side: &str,
) -> Result<Endpoint, BenchError> {
    match tokio::time::timeout(
        CONNECT_TIMEOUT,
        Client::connect_with(door.into(), target, options),
    )
    .await
    {
        Ok(client) => Ok(Endpoint::Gateway(client?)),
        Err(_) => {
            Err(format!("{side}: connecting to {target} took over {CONNECT_TIMEOUT:?}").into())
        }
    }
}

/// Connects and registers one pair.
async fn set_up_pair(
    args: &BenchArgs,
    index: usize,
    run: u64,
) -> Result<(Endpoint, Endpoint), BenchError> {
    let uid = format!("bench-{run}-{index}");
    if args.peerjs {
        return set_up_peerjs_pair(args, index, &uid).await;
    }
    let options = |door: BenchDoor, n: usize| ConnectOptions {
        source: source(args, n),
        seed_wire: args.seed || door == BenchDoor::Socketio,
        // One file descriptor per connection: the idle scale is bounded by
        // the descriptor limit.
        without_abort: true,
        ..ConnectOptions::default()
    };
    let mut web = connect(
        args.web_door,
        args.target,
        &options(args.web_door, 2 * index),
        "web",
    )
    .await?;
    wait_for(&mut web, "web", "welcome").await?;
    web.send(&envelope(
        "register",
        Some(json!({"uid": uid, "type": 0})),
        None,
    ))
    .await?;
    if args.seed {
        // The seed confirms nothing; `ipaddr` answers after the register is processed.
        web.send(&envelope("ipaddr", None, None)).await?;
        let _ = tokio::time::timeout(
            Duration::from_millis(500),
            wait_for(&mut web, "web", "ipaddr"),
        )
        .await;
    } else {
        wait_for(&mut web, "web", "registered").await?;
    }
    let mut app = connect(
        args.app_door,
        args.app_target.unwrap_or(args.target),
        &options(args.app_door, 2 * index + 1),
        "app",
    )
    .await?;
    wait_for(&mut app, "app", "welcome").await?;
    app.send(&envelope(
        "register",
        Some(json!({"uid": uid, "type": 1})),
        None,
    ))
    .await?;
    wait_for(&mut app, "app", "syncfrom").await?;
    Ok((web, app))
}

/// Connects one pair to a PeerJS server: the web peer `UID-web` and the
/// app peer `UID-app`, each within [`CONNECT_TIMEOUT`].
async fn set_up_peerjs_pair(
    args: &BenchArgs,
    index: usize,
    uid: &str,
) -> Result<(Endpoint, Endpoint), BenchError> {
    let (web_id, app_id) = (format!("{uid}-web"), format!("{uid}-app"));
    let peer = |n: usize, id: String, to: String, target: SocketAddr| async move {
        let connecting = peerjs::PeerJsClient::connect(target, source(args, n), &id, &to);
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(client) => Ok::<_, BenchError>(Endpoint::PeerJs(client?)),
            Err(_) => {
                Err(format!("{id}: connecting to {target} took over {CONNECT_TIMEOUT:?}").into())
            }
        }
    };
    let web = peer(2 * index, web_id.clone(), app_id.clone(), args.target).await?;
    let app = peer(
        2 * index + 1,
        app_id,
        web_id,
        args.app_target.unwrap_or(args.target),
    )
    .await?;
    Ok((web, app))
}

/// Per-pair results of the load phase.
struct PairResult {
    sent: u64,
    received: u64,
    histogram: Histogram<u64>,
}

fn micros_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// An event the server sent while the pair relays, or why the run cannot
/// go on: the server closed the session or answered with an `error` (a
/// rate-limited gateway, say), which would otherwise show up only as
/// messages missing from the counts.
fn unrefused(incoming: Incoming, side: &str) -> Result<Value, BenchError> {
    match incoming {
        Incoming::Event(event) if event["event"] == "error" => {
            Err(format!("the server refused a {side} message: {}", event["data"]).into())
        }
        Incoming::Event(event) => Ok(event),
        Incoming::Closed(closed) => {
            Err(format!("the server closed the {side} session: {closed:?}").into())
        }
    }
}

/// Echo round trips on one pair until `stop`, then drains. In open loop
/// the pair's first message goes `phase` (0..1) of its interval after the
/// start, so that the pairs' sends are spread evenly over the interval
/// (at 100,000 sessions a pair sends once every 100 s: all sending at once
/// would be a burst, then silence for the whole measured window).
async fn drive_pair(
    mut web: Endpoint,
    mut app: Endpoint,
    args: Arc<BenchArgs>,
    epoch: Instant,
    measure_from: Instant,
    stop: Instant,
    phase: f64,
) -> Result<PairResult, BenchError> {
    let padding = "x".repeat(args.size.saturating_sub(40));
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut sent, mut received) = (0u64, 0u64);
    let message = |t: u64| envelope("message", Some(json!({"t": t, "p": padding})), None);
    // Only messages sent inside the measured window count (sent, received, latency).
    let measured = |t: u64| {
        let at = epoch + Duration::from_micros(t);
        at >= measure_from && at < stop
    };
    let interval = args
        .rate
        .map(|rate| Duration::from_secs_f64(args.pairs as f64 / rate.max(0.001)));
    let mut next_send = Instant::now() + interval.unwrap_or_default().mul_f64(phase);
    let mut in_flight = 0usize;
    if interval.is_none() {
        for _ in 0..args.window {
            let t = micros_since(epoch);
            web.send(&message(t)).await?;
            sent += u64::from(measured(t));
            in_flight += 1;
        }
    }
    let drain_until = stop + Duration::from_secs(3);
    loop {
        let now = Instant::now();
        if now >= drain_until || (now >= stop && in_flight == 0) {
            break;
        }
        let sending = interval.is_some() && now < stop;
        let next_tick =
            tokio::time::Instant::from_std(if sending { next_send } else { drain_until });
        tokio::select! {
            () = tokio::time::sleep_until(next_tick) => {
                if sending {
                    // Open loop: the timestamp is the scheduled time, not now.
                    let t = u64::try_from(next_send.saturating_duration_since(epoch).as_micros()).unwrap_or(0);
                    web.send(&message(t)).await?;
                    sent += u64::from(measured(t));
                    in_flight += 1;
                    next_send += interval.unwrap_or_default();
                }
            }
            event = app.recv() => {
                // Echo everything that has arrived, then write it at once.
                let mut next = Some(event);
                while let Some(event) = next {
                    let event = unrefused(event?, "app")?;
                    if event["event"] == "message" {
                        app.feed(&envelope("message", event.get("data").cloned(), None)).await?;
                        if args.write_each {
                            app.flush().await?;
                        }
                    }
                    next = app.try_recv();
                }
                app.flush().await?;
            }
            event = web.recv() => {
                // Take everything that has arrived; in closed loop, write
                // the messages that replace them at once.
                let mut next = Some(event);
                while let Some(event) = next {
                    next = web.try_recv();
                    let event = unrefused(event?, "web")?;
                    if event["event"] != "message" {
                        continue;
                    }
                    in_flight = in_flight.saturating_sub(1);
                    let t = event["data"]["t"].as_u64().unwrap_or(0);
                    if measured(t) {
                        received += 1;
                        histogram.saturating_record(micros_since(epoch).saturating_sub(t).max(1));
                    }
                    if interval.is_none() && Instant::now() < stop {
                        let t = micros_since(epoch);
                        web.feed(&message(t)).await?;
                        if args.write_each {
                            web.flush().await?;
                        }
                        sent += u64::from(measured(t));
                        in_flight += 1;
                    }
                }
                web.flush().await?;
            }
        }
    }
    web.close().await;
    app.close().await;
    Ok(PairResult {
        sent,
        received,
        histogram,
    })
}

/// Runs the benchmark and prints (and optionally appends) the report.
pub async fn run(args: BenchArgs) -> anyhow::Result<BenchReport> {
    // Many connections: take every file descriptor the hard limit allows.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let run_id: u64 = rand::random::<u32>().into();
    let before = args.server_pid.and_then(process_usage);
    let args = Arc::new(args);
    let setup_started = Instant::now();
    let pairs: Vec<(Endpoint, Endpoint)> = futures_util::stream::iter(0..args.pairs)
        .map(|index| {
            let args = Arc::clone(&args);
            async move {
                if args.setup_rate > 0.0 {
                    let due = Duration::from_secs_f64(index as f64 / args.setup_rate);
                    tokio::time::sleep_until((setup_started + due).into()).await;
                }
                set_up_pair(&args, index, run_id).await
            }
        })
        .buffer_unordered(args.connect_concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("setting up pairs: {e}"))?;
    let setup = setup_started.elapsed();
    let after_setup = args.server_pid.and_then(process_usage);
    let doors = if args.seed {
        "seed (socket.io)".to_owned()
    } else if args.peerjs {
        "peerjs (websocket)".to_owned()
    } else {
        format!("{:?}/{:?}", args.web_door, args.app_door).to_lowercase()
    };
    let mut report = BenchReport {
        label: args.label.clone(),
        doors,
        pairs: pairs.len(),
        setup_sessions_per_second: (2 * pairs.len()) as f64 / setup.as_secs_f64(),
        ..BenchReport::default()
    };
    let connections = 2 * pairs.len();
    if let (Some(before), Some(after)) = (before, after_setup) {
        let (total, system) = cpu_us_per(before, after, connections.max(1) as f64);
        report.server_cpu_us_per_setup = Some(total);
        report.server_system_us_per_setup = Some(system);
    }
    if let (Some(pid), Some(before)) = (args.server_pid, before) {
        let rss_before = before.rss_bytes;
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(ProcessUsage { rss_bytes: rss, .. }) = process_usage(pid) {
            report.server_rss_mib = Some(rss as f64 / 1024.0 / 1024.0);
            report.server_rss_kib_per_connection =
                Some(rss.saturating_sub(rss_before) as f64 / 1024.0 / connections.max(1) as f64);
        }
    }
    if args.idle {
        drop(pairs);
        report::finish(&report, args.json.as_deref())?;
        return Ok(report);
    }
    if args.burst {
        run_burst(&args, pairs, &mut report).await?;
        report::finish(&report, args.json.as_deref())?;
        return Ok(report);
    }
    let epoch = Instant::now();
    let measure_from = epoch + args.warmup;
    let stop = measure_from + args.duration;
    let mut tasks = Vec::with_capacity(pairs.len());
    let count = pairs.len().max(1) as f64;
    for (index, (web, app)) in pairs.into_iter().enumerate() {
        tasks.push(tokio::spawn(drive_pair(
            web,
            app,
            Arc::clone(&args),
            epoch,
            measure_from,
            stop,
            index as f64 / count,
        )));
    }
    let pid = args.server_pid;
    let cpu_at = move |instant: Instant| async move {
        tokio::time::sleep_until(tokio::time::Instant::from_std(instant)).await;
        pid.and_then(process_usage)
    };
    let (cpu_start, cpu_stop) = tokio::join!(cpu_at(measure_from), cpu_at(stop));
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for task in tasks {
        let result = task
            .await?
            .map_err(|e| anyhow::anyhow!("pair failed: {e}"))?;
        report.sent += result.sent;
        report.received += result.received;
        histogram.add(&result.histogram)?;
    }
    report.lost = report.sent.saturating_sub(report.received);
    let relays = 2.0 * report.received as f64;
    report.relays_per_second = relays / args.duration.as_secs_f64();
    report.rtt_p50_us = histogram.value_at_quantile(0.5) as f64;
    report.rtt_p99_us = histogram.value_at_quantile(0.99) as f64;
    report.rtt_p999_us = histogram.value_at_quantile(0.999) as f64;
    report.rtt_max_us = histogram.max() as f64;
    if let (Some(start), Some(end)) = (cpu_start, cpu_stop)
        && relays > 0.0
    {
        let (total, system) = cpu_us_per(start, end, relays);
        report.server_cpu_us_per_relay = Some(total);
        report.server_cpu_s_per_million_relays = Some(total);
        report.server_system_us_per_relay = Some(system);
        report.server_context_switches_per_relay = Some(report::switches_per(start, end, relays));
    }
    report::finish(&report, args.json.as_deref())?;
    Ok(report)
}

/// Signaling burst: per pair, an offer and an answer (~2 KB) and ICE
/// candidates each way, as fast as possible; reports the time to finish.
async fn run_burst(
    args: &BenchArgs,
    pairs: Vec<(Endpoint, Endpoint)>,
    report: &mut BenchReport,
) -> anyhow::Result<()> {
    let sdp = "v=0 ".repeat(500);
    let candidates = args.candidates;
    let before = args.server_pid.and_then(process_usage);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (mut web, mut app) in pairs {
        let sdp = sdp.clone();
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let started = Instant::now();
            app.send(&envelope("message", Some(json!({"type": "offer", "sdp": sdp})), None)).await?;
            for n in 0..candidates {
                app.send(&envelope("message", Some(json!({"type": "candidate", "n": n, "candidate": "candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host"})), None)).await?;
            }
            let mut web_got = 0;
            while web_got < 1 + candidates {
                if next_event(&mut web, "web").await?["event"] == "message" { web_got += 1; }
            }
            web.send(&envelope("message", Some(json!({"type": "answer", "sdp": sdp})), None)).await?;
            for n in 0..candidates {
                web.send(&envelope("message", Some(json!({"type": "candidate", "n": n, "candidate": "candidate:1 1 udp 2122260223 192.0.2.2 54322 typ host"})), None)).await?;
            }
            let mut app_got = 0;
            while app_got < 1 + candidates {
                if next_event(&mut app, "app").await?["event"] == "message" { app_got += 1; }
            }
            histogram.saturating_record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
            web.close().await;
            app.close().await;
            Ok::<_, BenchError>(histogram)
        }));
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for task in tasks {
        histogram.add(
            &task
                .await?
                .map_err(|e| anyhow::anyhow!("burst failed: {e}"))?,
        )?;
    }
    let elapsed = started.elapsed();
    let relays = (report.pairs * 2 * (1 + candidates)) as f64;
    report.sent = relays as u64;
    report.received = relays as u64;
    report.relays_per_second = relays / elapsed.as_secs_f64();
    // For a burst, the latency is the time for a pair's whole exchange.
    report.rtt_p50_us = histogram.value_at_quantile(0.5) as f64;
    report.rtt_p99_us = histogram.value_at_quantile(0.99) as f64;
    report.rtt_p999_us = histogram.value_at_quantile(0.999) as f64;
    report.rtt_max_us = histogram.max() as f64;
    if let (Some(start), Some(pid)) = (before, args.server_pid)
        && let Some(end) = process_usage(pid)
    {
        let (total, system) = cpu_us_per(start, end, relays);
        report.server_cpu_us_per_relay = Some(total);
        report.server_cpu_s_per_million_relays = Some(total);
        report.server_system_us_per_relay = Some(system);
    }
    Ok(())
}

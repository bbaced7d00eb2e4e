//! `signalgate-chaos-load`: the load half of `scripts/chaos`. Holds
//! `--pairs` pairs through one address (the load balancer), every door pair
//! in turn, each side a resilient client that relays numbered messages at
//! a fixed rate and resumes after every drop. The orchestrator injects the
//! faults and tells this program when, one line on stdin each:
//!
//! - `relay`: every pair is set up; start sending;
//! - `fault KIND [NODE]`: a fault starts now (recovery is measured from here);
//! - `mark`: a further step of the current fault (the next node of a rolling restart);
//! - `failover`: the current (Redis) fault's replica was seen promoted;
//! - `drop PERCENT`: cut that share of the sessions' connections abruptly
//!   (they reconnect and resume), a `network_drop` fault;
//! - `stop`: stop sending, let what is in flight arrive (`--settle`), close
//!   every session, write the report (JSON, `--report`) and exit.
//!
//! It prints `registered N` once every side has registered.

#![forbid(unsafe_code)]

mod ledger;
mod side;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use signalgate_client::Door;
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

use ledger::Fault;
use side::{SideControl, SideSpec};

/// The load half of `scripts/chaos`.
#[derive(Debug, Parser)]
#[command(name = "signalgate-chaos-load", version)]
struct Args {
    /// Where every door is reached (the load balancer).
    #[arg(long)]
    target: SocketAddr,
    /// Pairs to hold (every door pair in turn).
    #[arg(long, default_value_t = 200)]
    pairs: usize,
    /// Each side sends one message per this many milliseconds.
    #[arg(long, default_value_t = 500)]
    interval_ms: u64,
    /// After `stop`: how long to wait for what is in flight.
    #[arg(long, default_value_t = 10)]
    settle: u64,
    /// A prefix for the uids, so that runs do not meet.
    #[arg(long, default_value = "chaos")]
    uid_prefix: String,
    /// Where to write the JSON report.
    #[arg(long)]
    report: std::path::PathBuf,
}

/// What the sides are doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Registering; not sending yet.
    Setup,
    /// Sending at the fixed rate.
    Relay,
    /// Not sending; in-flight messages arriving.
    Settle,
    /// Closing.
    Finish,
}

/// Milliseconds since the driver started: the one clock of every record.
#[derive(Clone, Copy)]
pub struct Clock(tokio::time::Instant);

impl Clock {
    /// Now, in milliseconds since the start.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let clock = Clock(tokio::time::Instant::now());
    let (phase, phase_rx) = watch::channel(Phase::Setup);
    let (drops, drops_rx) = watch::channel((0u64, 0u64));
    let registered = Arc::new(AtomicUsize::new(0));
    let control = SideControl {
        phase: phase_rx,
        drops: drops_rx,
        registered: Arc::clone(&registered),
    };
    let interval = Duration::from_millis(args.interval_ms.max(1));
    let mut tasks = Vec::new();
    for pair in 0..args.pairs {
        let web_door = Door::ALL[pair % 3];
        let app_door = Door::ALL[(pair / 3) % 3];
        let uid = format!("{}-{pair}", args.uid_prefix);
        let mut sides = Vec::new();
        for (index, role, door) in [(2 * pair, "web", web_door), (2 * pair + 1, "app", app_door)] {
            let spec = SideSpec {
                uid: uid.clone(),
                role,
                door,
                target: args.target,
                interval,
                offset: interval.mul_f64(((index * 7919) % 1000) as f64 / 1000.0),
                index,
            };
            sides.push(tokio::spawn(side::run(spec, clock, control.clone())));
            // Paced: a few hundred sessions a second, not all at once.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tasks.push(sides);
    }
    drop(control);
    let sides_total = 2 * args.pairs;
    tokio::spawn({
        let registered = Arc::clone(&registered);
        async move {
            while registered.load(Ordering::Relaxed) < sides_total {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            println!("registered {sides_total}");
        }
    });
    let mut faults: Vec<Fault> = Vec::new();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut drop_number = 0;
    while let Some(line) = lines.next_line().await.context("reading stdin")? {
        let at_ms = clock.now_ms();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["relay"] => {
                let _ = phase.send(Phase::Relay);
            }
            ["fault", kind, rest @ ..] => faults.push(Fault {
                kind: (*kind).to_owned(),
                node: rest.first().map(|node| (*node).to_owned()),
                at_ms,
                marks: vec![at_ms],
                failover_at_ms: None,
            }),
            ["failover"] => {
                if let Some(fault) = faults.last_mut() {
                    fault.failover_at_ms = Some(at_ms);
                }
            }
            ["mark"] => {
                if let Some(fault) = faults.last_mut() {
                    fault.marks.push(at_ms);
                }
            }
            ["drop", percent] => {
                let percent: u64 = percent.parse().context("drop PERCENT")?;
                faults.push(Fault {
                    kind: "network_drop".to_owned(),
                    node: None,
                    at_ms,
                    marks: vec![at_ms],
                    failover_at_ms: None,
                });
                drop_number += 1;
                let _ = drops.send((drop_number, percent));
            }
            ["stop"] => break,
            other => eprintln!("unknown command {other:?}"),
        }
    }
    let _ = phase.send(Phase::Settle);
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let end_ms = clock.now_ms();
    let _ = phase.send(Phase::Finish);
    let mut pairs = Vec::new();
    for sides in tasks {
        let mut records = Vec::new();
        for task in sides {
            records.push(task.await.context("a side panicked")?);
        }
        let app = records.pop().context("app side")?;
        let web = records.pop().context("web side")?;
        pairs.push((web, app));
    }
    let report = ledger::report(&pairs, &faults, end_ms);
    std::fs::write(&args.report, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", args.report.display()))?;
    println!("done");
    Ok(())
}

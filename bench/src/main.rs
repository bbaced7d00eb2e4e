//! `signalgate-bench`: load a signalgate gateway (any door, or mixed) or
//! the seed reference server, and report throughput, latency, loss, and
//! the server's CPU and memory (docs/BENCHMARKS.md).

#![forbid(unsafe_code)]

use clap::Parser;
use signalgate_bench::BenchArgs;

/// `signalgate-bench [OPTIONS]`.
#[derive(Debug, Parser)]
#[command(name = "signalgate-bench", version, about)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

/// The generator's runtime reads tokio's global queue every other task,
/// as the gateway's does (`signalgate::server::runtime`): with hundreds of
/// connections on one core, tasks moved there when the worker's own queue
/// overflowed otherwise waited behind newer ones, and that alone made a
/// gRPC round trip's p99 10× its median against a fair gateway
/// (docs/bench/notes.md). The load generator must not make the tail it
/// measures.
const GLOBAL_QUEUE_INTERVAL: u32 = 2;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .global_queue_interval(GLOBAL_QUEUE_INTERVAL)
        .build()?
        .block_on(async {
            signalgate_bench::run(Cli::parse().bench).await?;
            Ok(())
        })
}

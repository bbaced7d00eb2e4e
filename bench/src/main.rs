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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    signalgate_bench::run(Cli::parse().bench).await?;
    Ok(())
}

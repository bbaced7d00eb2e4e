//! The load generator (`signalgate-bench`) against a real gateway: every
//! mode finishes, counts what it sent and received, and reads the server's
//! CPU time. Nothing here asserts a timing.

mod common;

use clap::Parser;
use common::TestGateway;
use signalgate_bench::{BenchArgs, BenchReport};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

/// Runs `signalgate-bench` with `flags` against `gateway`, which lives in
/// this process: the "server pid" is our own.
async fn bench(gateway: &TestGateway, flags: &[&str]) -> BenchReport {
    let target = gateway.address.to_string();
    let pid = std::process::id().to_string();
    let mut argv = vec![
        "signalgate-bench",
        "--target",
        &target,
        "--server-pid",
        &pid,
    ];
    argv.extend_from_slice(flags);
    let Cli { bench: args } = Cli::try_parse_from(argv).expect("bench flags");
    signalgate_bench::run(args).await.expect("bench run")
}

fn assert_relayed_without_loss(report: &BenchReport) {
    assert!(report.sent > 0, "nothing sent: {report:?}");
    assert_eq!(report.received, report.sent, "{report:?}");
    assert_eq!(report.lost, 0, "{report:?}");
    let cpu = report.server_cpu_us_per_relay.expect("server CPU read");
    let kernel = report.server_system_us_per_relay.expect("kernel part read");
    assert!(
        cpu.is_finite() && kernel >= 0.0 && kernel <= cpu,
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_over_mixed_doors_loses_nothing() {
    let gateway = TestGateway::start().await;
    // The last combination writes one message per write (`--write-each`).
    let runs = [
        ("ws", "grpc", None),
        ("socketio", "ws", None),
        ("grpc", "socketio", None),
        ("socketio", "ws", Some("--write-each")),
    ];
    for (web, app, extra) in runs {
        let mut flags = vec![
            "--pairs",
            "4",
            "--window",
            "2",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--web-door",
            web,
            "--app-door",
            app,
        ];
        flags.extend(extra);
        let report = bench(&gateway, &flags).await;
        assert_eq!(report.doors, format!("{web}/{app}"));
        assert_eq!(report.pairs, 4);
        assert_relayed_without_loss(&report);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sends_at_the_offered_rate_and_loses_nothing() {
    let gateway = TestGateway::start().await;
    let report = bench(
        &gateway,
        &[
            "--pairs",
            "4",
            "--rate",
            "200",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
        ],
    )
    .await;
    // The schedule, not the server, decides how many are sent.
    // 4 pairs at 50 per second each, over a 1 s window (± one per pair at
    // its edges).
    assert!((196..=204).contains(&report.sent), "{report:?}");
    assert_relayed_without_loss(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_and_idle_modes_finish() {
    let gateway = TestGateway::start().await;
    let burst = bench(&gateway, &["--pairs", "3", "--burst", "--candidates", "5"]).await;
    assert_eq!(burst.sent, 3 * 2 * 6, "{burst:?}");
    assert!(burst.server_cpu_us_per_relay.is_some(), "{burst:?}");
    let idle = bench(&gateway, &["--pairs", "5", "--idle"]).await;
    assert_eq!(idle.pairs, 5);
    assert!(idle.server_rss_kib_per_connection.is_some(), "{idle:?}");
    assert!(idle.setup_sessions_per_second > 0.0, "{idle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_server_fails_the_run_instead_of_counting_nothing() {
    // A gateway with a tight rate limit refuses the flood and closes the
    // sessions: the run must say so, not report zero messages.
    let gateway = TestGateway::start_with(signalgate::Config {
        rate_limit: 5.0,
        rate_burst: 5.0,
        ..common::test_config()
    })
    .await;
    let target = gateway.address.to_string();
    let argv = [
        "bench",
        "--target",
        &target,
        "--pairs",
        "2",
        "--window",
        "8",
        "--duration",
        "1s",
        "--warmup",
        "0s",
    ];
    let Cli { bench: args } = Cli::try_parse_from(argv).expect("bench flags");
    let error = signalgate_bench::run(args)
        .await
        .expect_err("a refused run is an error");
    let message = format!("{error:#}");
    assert!(
        message.contains("refused") || message.contains("closed"),
        "{message}"
    );
}

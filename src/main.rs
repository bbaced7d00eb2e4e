//! `signalgate`: parse the configuration, start logging, serve until a signal.

#![forbid(unsafe_code)]

use clap::Parser;
use signalgate::server::config::{Cli, CliCommand};
use signalgate::{Gateway, auth, telemetry};
use tokio::net::TcpListener;

fn main() -> anyhow::Result<()> {
    signalgate::server::runtime::runtime()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None | Some(CliCommand::Serve) => serve(cli.config).await,
        Some(CliCommand::Token {
            uid,
            role,
            ttl,
            jwt_secret,
        }) => {
            println!("{}", auth::mint(&jwt_secret, &uid, role, ttl)?);
            Ok(())
        }
    }
}

async fn serve(config: signalgate::Config) -> anyhow::Result<()> {
    telemetry::init_logs(config.log_format);
    let listener = TcpListener::bind(config.listen).await?;
    let gateway = Gateway::from_config(config).await?;
    gateway.serve(listener, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

//! `signalgate-check --closes N`: the closes a server starts reach the
//! client with their code, through whatever stands in between (a load
//! balancer). Each case runs `N` times on fresh connections:
//!
//! - WebSocket: a 200 KiB message (over the 64 KiB default limit) is
//!   answered with close 1009, the rest of it still unread by the server;
//! - WebSocket: a binary frame on the JSON door is answered with close 1003;
//! - gRPC: a 200 KiB message ends the stream with `OUT_OF_RANGE`.
//!
//! A server that closes its socket with input unread makes the kernel
//! answer with a reset, and through a proxy the reset can overtake the
//! close frame: the client then sees a bare TCP close instead of its code.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use signalgate_client::{Client, Closed, ConnectOptions, Door, Incoming, envelope};
use tokio_tungstenite::tungstenite::Message;

/// Bytes of the oversized message.
const OVERSIZED: usize = 200 * 1024;

/// One case: its name and the close it must end in.
#[derive(Clone, Copy, Debug)]
pub enum Case {
    /// An oversized text message on the WebSocket door: close 1009.
    WsOversized,
    /// A binary frame on the WebSocket door: close 1003.
    WsBinary,
    /// An oversized message on the gRPC door: `OUT_OF_RANGE`.
    GrpcOversized,
}

impl Case {
    /// Every case.
    pub const ALL: [Case; 3] = [Case::WsOversized, Case::WsBinary, Case::GrpcOversized];

    /// What the case sends and expects, for the report.
    pub fn name(self) -> &'static str {
        match self {
            Case::WsOversized => "ws: 200 KiB message -> close 1009",
            Case::WsBinary => "ws: binary frame -> close 1003",
            Case::GrpcOversized => "grpc: 200 KiB message -> OUT_OF_RANGE",
        }
    }
}

/// Runs `case` once against `address`; `Ok` if the close arrived whole.
pub async fn run(
    case: Case,
    address: SocketAddr,
    token: Option<&str>,
    step: Duration,
) -> anyhow::Result<()> {
    let door = match case {
        Case::WsOversized | Case::WsBinary => Door::Ws,
        Case::GrpcOversized => Door::Grpc,
    };
    let options = ConnectOptions {
        token: token.map(str::to_owned),
        ..ConnectOptions::default()
    };
    let mut client = Client::connect_with(door, address, &options)
        .await
        .with_context(|| format!("{door}: connect to {address}"))?;
    let oversized = "x".repeat(OVERSIZED);
    match (&mut client, case) {
        (Client::Ws(raw), Case::WsOversized) => raw
            .send_raw(Message::text(oversized))
            .await
            .context("send")?,
        (Client::Ws(raw), Case::WsBinary) => raw
            .send_raw(Message::binary(vec![0u8; 1024]))
            .await
            .context("send")?,
        (client, _) => client
            .send(&envelope("message", Some(json!(oversized)), None))
            .await
            .context("send")?,
    }
    let closed = tokio::time::timeout(step, async {
        loop {
            match client.recv().await {
                Ok(Incoming::Event(_)) => continue,
                Ok(Incoming::Closed(closed)) => return Ok(closed),
                Err(error) => return Err(error),
            }
        }
    })
    .await
    .with_context(|| format!("no close within {step:?}"))??;
    let (expected, got) = match (case, &closed) {
        (Case::WsOversized, Closed::WebSocket(Some((1009, _))))
        | (Case::WsBinary, Closed::WebSocket(Some((1003, _)))) => return Ok(()),
        (Case::GrpcOversized, Closed::Grpc(tonic::Code::OutOfRange, _)) => return Ok(()),
        (case, closed) => (case.name(), format!("{closed:?}")),
    };
    bail!("expected {expected}, got {got}")
}

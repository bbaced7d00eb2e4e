//! One side of a benchmarked pair: a client of signalgate or of the seed
//! (any door), or a PeerJS client. The relay loop drives either the same
//! way, with envelopes.

use serde_json::Value;
use signalgate_client::{Client, Incoming};

use super::BenchError;
use super::peerjs::PeerJsClient;

/// A connected side.
#[derive(Debug)]
pub(crate) enum Endpoint {
    /// signalgate or the seed server, through a door.
    Gateway(Client),
    /// The PeerJS server.
    PeerJs(PeerJsClient),
}

impl Endpoint {
    /// Sends one envelope.
    pub(crate) async fn send(&mut self, envelope: &Value) -> Result<(), BenchError> {
        match self {
            Endpoint::Gateway(client) => client.send(envelope).await?,
            Endpoint::PeerJs(client) => client.send(envelope).await?,
        }
        Ok(())
    }

    /// Queues one envelope, written by the next [`Endpoint::flush`].
    pub(crate) async fn feed(&mut self, envelope: &Value) -> Result<(), BenchError> {
        match self {
            Endpoint::Gateway(client) => client.feed(envelope).await?,
            Endpoint::PeerJs(client) => client.feed(envelope).await?,
        }
        Ok(())
    }

    /// Writes what was queued.
    pub(crate) async fn flush(&mut self) -> Result<(), BenchError> {
        match self {
            Endpoint::Gateway(client) => client.flush().await?,
            Endpoint::PeerJs(client) => client.flush().await?,
        }
        Ok(())
    }

    /// The next event or the close.
    pub(crate) async fn recv(&mut self) -> Result<Incoming, BenchError> {
        Ok(match self {
            Endpoint::Gateway(client) => client.recv().await?,
            Endpoint::PeerJs(client) => client.recv().await?,
        })
    }

    /// An event or close that has already arrived, without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<Result<Incoming, BenchError>> {
        futures_util::FutureExt::now_or_never(self.recv())
    }

    /// Ends the connection cleanly.
    pub(crate) async fn close(self) {
        match self {
            Endpoint::Gateway(client) => client.close().await,
            Endpoint::PeerJs(client) => client.close().await,
        }
    }
}

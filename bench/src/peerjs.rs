//! A client of the PeerJS server (npm `peer`), the WebRTC signaling server
//! people pick instead of writing their own, so that `scripts/bench` can
//! load it the way it loads signalgate and the seed (issue 35).
//!
//! Its protocol is JSON over one WebSocket: connect to
//! `/peerjs?key=peerjs&id=ID&token=T`, wait for `{"type":"OPEN"}`, send
//! `{"type":"OFFER","dst":PEER,"payload":…}`; the peer receives it with
//! `src` added. This client speaks it behind the generator's envelopes: a
//! `message` envelope goes out as an `OFFER` to the paired peer and an
//! `OFFER` that arrives comes back as a `message` envelope, so the relay
//! loop is the same for every server.

use std::net::{IpAddr, SocketAddr};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use signalgate_client::{Closed, Incoming};

/// Why a PeerJS connection failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerJsError {
    /// The TCP connection failed.
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    /// The WebSocket failed.
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The server sent something that is not a PeerJS message, or refused
    /// the id (`ID-TAKEN`, `ERROR`).
    #[error("peerjs: {0}")]
    Protocol(String),
}

/// One peer connected to a PeerJS server, relaying to one other peer.
#[derive(Debug)]
pub struct PeerJsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The peer id every `message` is sent to.
    peer: String,
}

impl PeerJsClient {
    /// Connects as `id` (from `source` when given) and waits for `OPEN`;
    /// what is sent goes to `peer`.
    pub async fn connect(
        address: SocketAddr,
        source: Option<IpAddr>,
        id: &str,
        peer: &str,
    ) -> Result<PeerJsClient, PeerJsError> {
        let socket = match address {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let Some(source) = source {
            socket.bind(SocketAddr::new(source, 0))?;
        }
        let stream = socket.connect(address).await?;
        stream.set_nodelay(true)?;
        // The same small buffers as the gateway's WebSocket client.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(4096);
        let url = format!("ws://{address}/peerjs?key=peerjs&id={id}&token=bench");
        let (socket, _) = tokio_tungstenite::client_async_with_config(
            url,
            MaybeTlsStream::Plain(stream),
            Some(config),
        )
        .await?;
        let mut client = PeerJsClient {
            socket,
            peer: peer.to_owned(),
        };
        match client.next_message().await? {
            Some(message) if message["type"] == "OPEN" => Ok(client),
            Some(message) => Err(PeerJsError::Protocol(format!(
                "expected OPEN, got {message}"
            ))),
            None => Err(PeerJsError::Protocol("closed before OPEN".into())),
        }
    }

    /// The PeerJS message carrying a `message` envelope's data to the peer
    /// (other envelopes carry nothing a PeerJS server relays).
    fn offer(&self, envelope: &Value) -> Message {
        let payload = envelope.get("data").cloned().unwrap_or(Value::Null);
        Message::text(json!({"type": "OFFER", "dst": self.peer, "payload": payload}).to_string())
    }

    /// Sends an envelope's data to the peer.
    pub async fn send(&mut self, envelope: &Value) -> Result<(), PeerJsError> {
        let offer = self.offer(envelope);
        self.socket.send(offer).await?;
        Ok(())
    }

    /// Queues an envelope's data for the peer; written by the next flush.
    pub async fn feed(&mut self, envelope: &Value) -> Result<(), PeerJsError> {
        let offer = self.offer(envelope);
        self.socket.feed(offer).await?;
        Ok(())
    }

    /// Writes what [`PeerJsClient::feed`] queued.
    pub async fn flush(&mut self) -> Result<(), PeerJsError> {
        self.socket.flush().await?;
        Ok(())
    }

    /// The next relayed message, as a `message` envelope, or the close.
    pub async fn recv(&mut self) -> Result<Incoming, PeerJsError> {
        loop {
            let Some(message) = self.next_message().await? else {
                return Ok(Incoming::Closed(Closed::WebSocket(None)));
            };
            match message["type"].as_str() {
                Some("OFFER" | "ANSWER" | "CANDIDATE") => {
                    return Ok(Incoming::Event(json!({
                        "event": "message",
                        "data": message.get("payload").cloned().unwrap_or(Value::Null),
                    })));
                }
                Some("ERROR" | "ID-TAKEN" | "INVALID-KEY" | "EXPIRE" | "LEAVE") => {
                    return Ok(Incoming::Event(json!({"event": "error", "data": message})));
                }
                _ => {}
            }
        }
    }

    /// Closes the WebSocket.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
        while let Some(Ok(_)) = self.socket.next().await {}
    }

    /// The next text message as JSON (`None` once closed).
    async fn next_message(&mut self) -> Result<Option<Value>, PeerJsError> {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str())
                        .map(Some)
                        .map_err(|e| PeerJsError::Protocol(e.to_string()));
                }
                Some(Ok(Message::Close(_))) | None => return Ok(None),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
            }
        }
    }
}

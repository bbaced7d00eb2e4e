//! A minimal Socket.IO client (Engine.IO 4, websocket transport, namespace
//! `/`), enough to run the scenario suite and the load generator over the
//! Socket.IO door. The npm socket.io-client is tested separately
//! (tests/node).

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{ClientError, Closed, ConnectOptions, Incoming, tcp};

/// A Socket.IO client of signalgate's `/socket.io/`.
#[derive(Debug)]
pub struct SocketIoClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Whether events carry the trailing `{"seq"}` argument (`resume=1`).
    sequenced: bool,
}

fn protocol_error(what: impl Into<String>) -> ClientError {
    ClientError::Unencodable(what.into())
}

impl SocketIoClient {
    /// Connects over the websocket transport and joins the namespace `/`.
    pub async fn connect(address: SocketAddr) -> Result<SocketIoClient, ClientError> {
        SocketIoClient::connect_with(address, &ConnectOptions::default()).await
    }

    /// Connects with options. Unless `seed_wire` is set the client asks for
    /// resumption (`resume=1`: the resume token in `welcome` and `{"seq"}`
    /// on events).
    pub async fn connect_with(
        address: SocketAddr,
        options: &ConnectOptions,
    ) -> Result<SocketIoClient, ClientError> {
        let sequenced = !options.seed_wire;
        let query = if sequenced { "&resume=1" } else { "" };
        let url = format!("ws://{address}/socket.io/?EIO=4&transport=websocket{query}");
        let stream = tcp(address, options.source).await?;
        let (mut socket, _) = tokio_tungstenite::client_async_with_config(
            url,
            MaybeTlsStream::Plain(stream),
            Some(super::websocket_config()),
        )
        .await?;
        let token = options.token.as_deref();
        // Engine.IO open packet: `0{"sid": ..., "pingInterval": ...}`.
        match socket.next().await {
            Some(Ok(Message::Text(text))) if text.starts_with('0') => {}
            other => {
                return Err(protocol_error(format!(
                    "expected an open packet, got {other:?}"
                )));
            }
        }
        let connect = match token {
            Some(token) => format!("40{}", json!({"token": token})),
            None => "40".to_owned(),
        };
        socket.send(Message::text(connect)).await?;
        Ok(SocketIoClient { socket, sequenced })
    }

    /// Emits `envelope.event` with `envelope.data`; an `id` becomes the
    /// Socket.IO acknowledgement id.
    pub async fn send(&mut self, envelope: &Value) -> Result<(), ClientError> {
        self.feed(envelope).await?;
        self.flush().await
    }

    /// Writes everything queued by [`SocketIoClient::feed`].
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.socket.flush().await?;
        Ok(())
    }

    /// Queues an emit without flushing it (see [`SocketIoClient::flush`]).
    pub async fn feed(&mut self, envelope: &Value) -> Result<(), ClientError> {
        let event = envelope
            .get("event")
            .and_then(Value::as_str)
            .ok_or_else(|| protocol_error("missing event"))?;
        // Seed-wire clients send ids as plain acknowledgement ids only.
        let id = envelope.get("id").and_then(Value::as_u64);
        if !self.sequenced {
            let arguments = match envelope.get("data") {
                Some(data) => json!([event, data]),
                None => json!([event]),
            };
            let ack = id.map(|id| id.to_string()).unwrap_or_default();
            self.socket
                .feed(Message::text(format!("42{ack}{arguments}")))
                .await?;
            return Ok(());
        }
        // With an id: `[event, data|null, {"id"}]`, the id also being the
        // acknowledgement id.
        let arguments = match (envelope.get("data"), id) {
            (data, Some(id)) => json!([event, data.unwrap_or(&Value::Null), {"id": id}]),
            (Some(data), None) => json!([event, data]),
            (None, None) => json!([event]),
        };
        let ack = id.map(|id| id.to_string()).unwrap_or_default();
        self.socket
            .feed(Message::text(format!("42{ack}{arguments}")))
            .await?;
        Ok(())
    }

    /// Sends a raw Engine.IO text packet (for bad-input tests).
    pub async fn send_raw(&mut self, message: Message) -> Result<(), ClientError> {
        self.socket.send(message).await?;
        Ok(())
    }

    /// The next event (acknowledgements become `ack`/`error` envelopes with
    /// the id), or the end of the session.
    pub async fn recv(&mut self) -> Result<Incoming, ClientError> {
        loop {
            let text = match self.socket.next().await {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                    return Ok(Incoming::Closed(Closed::SocketIo(format!(
                        "transport closed {reason}"
                    ))));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => {
                    return Ok(Incoming::Closed(Closed::SocketIo("transport lost".into())));
                }
            };
            let text = text.as_str();
            match text.as_bytes().first() {
                // Engine.IO ping → pong.
                Some(b'2') => {
                    if self.socket.send(Message::text("3")).await.is_err() {
                        return Ok(Incoming::Closed(Closed::SocketIo("transport lost".into())));
                    }
                    continue;
                }
                // Engine.IO close.
                Some(b'1') => {
                    return Ok(Incoming::Closed(Closed::SocketIo("engine closed".into())));
                }
                Some(b'4') => {}
                _ => continue,
            }
            let packet = &text[1..];
            match packet.as_bytes().first() {
                // CONNECT acknowledgement.
                Some(b'0') => continue,
                // Namespace DISCONNECT from the server.
                Some(b'1') => {
                    return Ok(Incoming::Closed(Closed::SocketIo(
                        "server disconnect".into(),
                    )));
                }
                Some(b'2') => {
                    return Ok(Incoming::Event(event_packet(&packet[1..], self.sequenced)?));
                }
                Some(b'3') => return Ok(Incoming::Event(ack_packet(&packet[1..])?)),
                // CONNECT_ERROR: the namespace refused the connection.
                Some(b'4') => {
                    return Ok(Incoming::Closed(Closed::SocketIo(format!(
                        "connect_error {}",
                        &packet[1..]
                    ))));
                }
                _ => return Err(protocol_error(format!("unexpected packet {text}"))),
            }
        }
    }

    /// Sends a namespace disconnect and closes the transport.
    pub async fn close(mut self) {
        let _ = self.socket.send(Message::text("41")).await;
        let _ = self.socket.close(None).await;
        while let Some(Ok(_)) = self.socket.next().await {}
    }
}

/// `["name", data?, {"seq": N}?]` → envelope. Every event but `welcome`
/// and `resumed` ends with the `{"seq"}` argument (the client connected
/// with `resume=1`).
fn event_packet(body: &str, sequenced: bool) -> Result<Value, ClientError> {
    let mut arguments: Vec<Value> =
        serde_json::from_str(body).map_err(|e| protocol_error(format!("event packet: {e}")))?;
    if arguments.is_empty() {
        return Err(protocol_error("event without a name"));
    }
    let name = arguments
        .remove(0)
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| protocol_error("event name is not a string"))?;
    let seq = if !sequenced || name == "welcome" || name == "resumed" {
        None
    } else {
        arguments
            .pop()
            .and_then(|last| last.get("seq").and_then(Value::as_u64))
    };
    let mut envelope = match arguments.into_iter().next() {
        Some(data) => json!({"event": name, "data": data}),
        None => json!({"event": name}),
    };
    if let Some(seq) = seq {
        envelope["seq"] = json!(seq);
    }
    Ok(envelope)
}

/// `<id>[{"ok": bool, "error": {...}}]` → `ack` or `error` envelope.
fn ack_packet(body: &str) -> Result<Value, ClientError> {
    let split = body
        .find('[')
        .ok_or_else(|| protocol_error("ack without arguments"))?;
    let id: u64 = body[..split]
        .parse()
        .map_err(|_| protocol_error("ack without an id"))?;
    let arguments: Vec<Value> =
        serde_json::from_str(&body[split..]).map_err(|e| protocol_error(format!("ack: {e}")))?;
    let mut arguments = arguments.into_iter();
    let reply = arguments.next().unwrap_or(Value::Null);
    // A resumption client's answers carry their sequence number second.
    let seq = arguments.next().and_then(|meta| meta.get("seq").cloned());
    let mut envelope = if reply["ok"] == true {
        json!({"event": "ack", "id": id})
    } else {
        json!({"event": "error", "data": reply["error"], "id": id})
    };
    if let Some(seq) = seq {
        envelope["seq"] = seq;
    }
    Ok(envelope)
}

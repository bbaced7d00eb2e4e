//! Client of the JSON WebSocket door.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{ClientError, Closed, ConnectOptions, Incoming, tcp};

/// A client of `/ws`.
#[derive(Debug)]
pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Connects to `ws://{address}/ws`.
    pub async fn connect(address: SocketAddr) -> Result<WsClient, ClientError> {
        WsClient::connect_with(address, &ConnectOptions::default()).await
    }

    /// Connects with options (token, source address).
    pub async fn connect_with(
        address: SocketAddr,
        options: &ConnectOptions,
    ) -> Result<WsClient, ClientError> {
        let url = match &options.token {
            Some(token) => format!("ws://{address}/ws?token={token}"),
            None => format!("ws://{address}/ws"),
        };
        let stream = tcp(address, options.source).await?;
        let (socket, _) = tokio_tungstenite::client_async_with_config(
            url,
            MaybeTlsStream::Plain(stream),
            Some(super::websocket_config()),
        )
        .await?;
        Ok(WsClient { socket })
    }

    /// Connects over an already established stream (e.g. TLS).
    pub async fn over<S>(url: &str, stream: S) -> Result<WebSocketStream<S>, ClientError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let (socket, _) = tokio_tungstenite::client_async(url, stream).await?;
        Ok(socket)
    }

    /// Resets the TCP connection (RST, no close frame, no FIN handshake).
    pub fn reset(self) {
        if let MaybeTlsStream::Plain(stream) = self.socket.get_ref() {
            let _ = stream.set_zero_linger();
        }
    }

    /// Connects to any URL (for query strings and headers).
    pub async fn connect_url(url: &str) -> Result<WsClient, ClientError> {
        let (socket, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(WsClient { socket })
    }

    /// Sends an envelope as a text frame.
    pub async fn send(&mut self, envelope: &Value) -> Result<(), ClientError> {
        self.send_raw(Message::text(envelope.to_string())).await
    }

    /// Queues an envelope without flushing it (see [`WsClient::flush`]).
    pub async fn feed(&mut self, envelope: &Value) -> Result<(), ClientError> {
        self.socket
            .feed(Message::text(envelope.to_string()))
            .await?;
        Ok(())
    }

    /// Writes everything queued by [`WsClient::feed`].
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.socket.flush().await?;
        Ok(())
    }

    /// Sends any WebSocket message (for bad-input tests).
    pub async fn send_raw(&mut self, message: Message) -> Result<(), ClientError> {
        self.socket.send(message).await?;
        Ok(())
    }

    /// The next event, or the close.
    pub async fn recv(&mut self) -> Result<Incoming, ClientError> {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(text.as_str())
                        .map_err(|e| ClientError::Unencodable(e.to_string()))?;
                    return Ok(Incoming::Event(value));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Ok(Incoming::Closed(Closed::WebSocket(
                        frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                    )));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ok(Incoming::Closed(Closed::WebSocket(None))),
            }
        }
    }

    /// Sends a close frame and waits for the server's.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
        while let Some(Ok(_)) = self.socket.next().await {}
    }
}

//! Client of the gRPC door, translating envelopes to and from protobuf.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};

use super::{ClientError, Closed, ConnectOptions, Incoming, tcp};
use signalgate_proto::json::{json_to_value, value_to_json};
use signalgate_proto::v1::{
    self as pb, client_event, server_event, signaling_client::SignalingClient,
};

/// Requests queued towards the server before `send` waits.
const SEND_BUFFER: usize = 64;

/// A client of the gRPC `Connect` stream.
#[derive(Debug)]
pub struct GrpcClient {
    requests: Option<mpsc::Sender<pb::ClientEvent>>,
    events: Streaming<pb::ServerEvent>,
    /// A second handle on the TCP socket, to cut it abruptly.
    socket: Option<std::net::TcpStream>,
}

impl GrpcClient {
    /// Connects to `http://{address}` on a connection of its own and opens
    /// one `Connect` stream.
    pub async fn connect(address: SocketAddr) -> Result<GrpcClient, ClientError> {
        GrpcClient::connect_with(address, &ConnectOptions::default()).await
    }

    /// Connects with options (token, source address).
    pub async fn connect_with(
        address: SocketAddr,
        options: &ConnectOptions,
    ) -> Result<GrpcClient, ClientError> {
        let token = options.token.as_deref();
        let source = options.source;
        let abortable = !options.without_abort;
        let socket_slot = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&socket_slot);
        let connector = tower::service_fn(move |_: tonic::codegen::http::Uri| {
            let slot = Arc::clone(&slot);
            async move {
                let stream = tcp(address, source).await?;
                if !abortable {
                    return Ok::<_, std::io::Error>(TokioIo::new(stream));
                }
                // A second descriptor of the socket, for `abort`.
                let stream = stream.into_std()?;
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(stream.try_clone()?);
                Ok(TokioIo::new(tokio::net::TcpStream::from_std(stream)?))
            }
        });
        let channel = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| ClientError::Unencodable(e.to_string()))?
            .connect_with_connector(connector)
            .await?;
        let mut client = GrpcClient::open_with_token(channel, token).await?;
        client.socket = socket_slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        Ok(client)
    }

    /// Opens a `Connect` stream on an existing channel.
    pub async fn open(channel: Channel) -> Result<GrpcClient, ClientError> {
        GrpcClient::open_with_token(channel, None).await
    }

    /// Opens a `Connect` stream, presenting `authorization: Bearer` when given.
    pub async fn open_with_token(
        channel: Channel,
        token: Option<&str>,
    ) -> Result<GrpcClient, ClientError> {
        let (requests, outgoing) = mpsc::channel(SEND_BUFFER);
        let mut client = SignalingClient::new(channel);
        let mut request = tonic::Request::new(ReceiverStream::new(outgoing));
        if let Some(token) = token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| ClientError::Unencodable("token is not a header value".into()))?;
            request.metadata_mut().insert("authorization", value);
        }
        let response = client.connect(request).await?;
        Ok(GrpcClient {
            requests: Some(requests),
            events: response.into_inner(),
            socket: None,
        })
    }

    /// Cuts the TCP connection without ending the stream (as a phone that
    /// loses its network): the server sees the connection vanish. Does
    /// nothing for a client connected with
    /// [`ConnectOptions::without_abort`](super::ConnectOptions::without_abort).
    pub fn abort(self) {
        if let Some(socket) = &self.socket {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Sends an envelope, converted to a `ClientEvent`.
    pub async fn send(&mut self, envelope: &Value) -> Result<(), ClientError> {
        let event = envelope_to_client_event(envelope)?;
        self.send_event(event).await
    }

    /// Sends a raw `ClientEvent` (for bad-input tests).
    pub async fn send_event(&mut self, event: pb::ClientEvent) -> Result<(), ClientError> {
        let requests = self.requests.as_ref().ok_or(ClientError::Closed)?;
        requests.send(event).await.map_err(|_| ClientError::Closed)
    }

    /// The next event, or the end of the stream.
    pub async fn recv(&mut self) -> Result<Incoming, ClientError> {
        match self.events.message().await {
            Ok(Some(event)) => Ok(Incoming::Event(server_event_to_envelope(event))),
            Ok(None) => Ok(Incoming::Closed(Closed::Grpc(
                tonic::Code::Ok,
                String::new(),
            ))),
            Err(status) => Ok(Incoming::Closed(Closed::Grpc(
                status.code(),
                status.message().to_owned(),
            ))),
        }
    }

    /// Half-closes the request stream and waits for the server to end the
    /// response stream.
    pub async fn close(mut self) {
        self.requests = None;
        while let Ok(Some(_)) = self.events.message().await {}
    }
}

fn unencodable(what: &str) -> ClientError {
    ClientError::Unencodable(what.to_owned())
}

/// Envelope → `ClientEvent`.
pub fn envelope_to_client_event(envelope: &Value) -> Result<pb::ClientEvent, ClientError> {
    use client_event::Event as E;
    let name = envelope
        .get("event")
        .and_then(Value::as_str)
        .ok_or_else(|| unencodable("missing event"))?;
    let data = envelope.get("data").cloned().unwrap_or(Value::Null);
    let id = envelope.get("id").and_then(Value::as_u64).unwrap_or(0);
    let event = match name {
        "register" => {
            let uid = data
                .get("uid")
                .and_then(Value::as_str)
                .ok_or_else(|| unencodable("register.uid"))?
                .to_owned();
            let role = match data.get("type") {
                Some(t) if t == 0 || t == "web" => pb::Role::Web,
                Some(t) if t == 1 || t == "app" => pb::Role::App,
                _ => pb::Role::Unspecified,
            };
            E::Register(pb::Register {
                uid,
                role: role as i32,
            })
        }
        "syncto" => E::Syncto(json_to_value(&data)),
        "message" => E::Message(json_to_value(&data)),
        "export" => E::Export(json_to_value(&data)),
        "exception" => E::Exception(json_to_value(&data)),
        "transfile" => E::Transfile(pb::Transfile {
            size: data.get("size").and_then(Value::as_u64).unwrap_or(0),
            name: data
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        }),
        "ctrlSendSpeed" => E::CtrlSendSpeed(pb::CtrlSendSpeed {
            bytes_received: data
                .as_u64()
                .ok_or_else(|| unencodable("ctrlSendSpeed data"))?,
        }),
        "ipaddr" => E::Ipaddr(pb::IpAddrRequest {}),
        "iceservers" => E::IceServers(pb::IceServersRequest {}),
        "callreport" => {
            let text = |name: &str| {
                data.get(name)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            // int64 fields: a JSON value that is no whole number goes as -1,
            // which the server refuses as JSON doors refuse the original.
            let millis = |name: &str| data.get(name).map(|v| v.as_i64().unwrap_or(-1));
            E::CallReport(pb::CallReport {
                call: text("call"),
                result: text("result"),
                path: text("path"),
                setup_ms: millis("setupMs"),
                duration_ms: millis("durationMs"),
                reason: text("reason"),
            })
        }
        "resume" => E::Resume(pb::Resume {
            token: data
                .get("token")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            last_seq: data
                .get("last_seq")
                .and_then(Value::as_u64)
                .unwrap_or_default(),
        }),
        other => return Err(unencodable(other)),
    };
    Ok(pb::ClientEvent {
        id,
        event: Some(event),
    })
}

fn json_of(value: &prost_types::Value) -> Value {
    value_to_json(value).unwrap_or(Value::Null)
}

fn role_json(role: i32) -> (Value, Value) {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Web) => (json!("web"), json!(0)),
        Ok(pb::Role::App) => (json!("app"), json!(1)),
        _ => (Value::Null, Value::Null),
    }
}

/// `IceServer`s as `RTCIceServer[]`, the WebSocket door's shape (empty
/// strings are no credential).
fn ice_servers_json(servers: &[pb::IceServer]) -> Value {
    servers
        .iter()
        .map(|server| {
            let mut entry = json!({"urls": server.urls});
            if !server.username.is_empty() {
                entry["username"] = json!(server.username);
                entry["credential"] = json!(server.credential);
            }
            entry
        })
        .collect()
}

/// `iceServers` and `iceServersExpireAt` as the WebSocket door adds them to
/// `registered` and `resumed`: only when the gateway has ICE servers.
fn add_ice_fields(data: &mut Value, servers: &[pb::IceServer], expire_at: u64) {
    if !servers.is_empty() {
        data["iceServers"] = ice_servers_json(servers);
    }
    if expire_at != 0 {
        data["iceServersExpireAt"] = json!(expire_at);
    }
}

/// `ServerEvent` → envelope, in the shapes of the WebSocket door.
pub fn server_event_to_envelope(event: pb::ServerEvent) -> Value {
    let seq = event.seq;
    let mut envelope = event_to_envelope(event.event);
    if seq != 0 {
        envelope["seq"] = json!(seq);
    }
    envelope
}

fn event_to_envelope(event: Option<server_event::Event>) -> Value {
    use server_event::Event as E;
    let Some(event) = event else {
        return json!({"event": "unknown"});
    };
    match event {
        E::Welcome(w) => {
            let mut data = json!({"message": w.message, "id": w.id});
            if !w.resume_token.is_empty() {
                data["resumeToken"] = json!(w.resume_token);
            }
            json!({"event": "welcome", "data": data})
        }
        E::Resumed(r) => {
            let (role, seed_type) = role_json(r.role);
            let mut data = json!({
                "id": r.id, "uid": r.uid, "role": role, "type": seed_type,
                "resumeToken": r.resume_token, "replayed": r.replayed, "polite": r.polite});
            add_ice_fields(&mut data, &r.ice_servers, r.ice_servers_expire_at);
            json!({"event": "resumed", "data": data})
        }
        E::PeerAway(_) => json!({"event": "peer_away"}),
        E::PeerBack(_) => json!({"event": "peer_back"}),
        E::Registered(r) => {
            let (role, seed_type) = role_json(r.role);
            let mut data = json!({
                "uid": r.uid, "role": role, "type": seed_type, "peerPresent": r.peer_present,
                "polite": r.polite});
            add_ice_fields(&mut data, &r.ice_servers, r.ice_servers_expire_at);
            json!({"event": "registered", "data": data})
        }
        E::Syncfrom(_) => json!({"event": "syncfrom"}),
        E::Syncto(v) => json!({"event": "syncto", "data": json_of(&v)}),
        E::Message(v) => json!({"event": "message", "data": json_of(&v)}),
        E::Export(v) => json!({"event": "export", "data": json_of(&v)}),
        E::Exception(v) => json!({"event": "exception", "data": json_of(&v)}),
        E::Transfile(t) => json!({"event": "transfile", "data": {"size": t.size, "name": t.name}}),
        E::CtrlSendSpeed(c) => json!({"event": "ctrlSendSpeed", "data": c.bytes_received}),
        E::Ipaddr(a) => json!({"event": "ipaddr", "data": a.addresses}),
        E::IceServers(list) => {
            let mut data = json!({"iceServers": ice_servers_json(&list.ice_servers)});
            if list.expire_at != 0 {
                data["iceServersExpireAt"] = json!(list.expire_at);
            }
            json!({"event": "iceservers", "data": data})
        }
        E::Byebye(_) => json!({"event": "byebye"}),
        E::Notice(v) => json!({"event": "notice", "data": json_of(&v)}),
        E::Reconnect(r) => {
            json!({"event": "reconnect", "data": {"resume_token": r.resume_token, "after_ms": r.after_ms}})
        }
        E::Ack(a) => json!({"event": "ack", "id": a.id}),
        E::Error(e) => {
            let mut out = json!({"event": "error", "data": {"code": e.code, "message": e.message}});
            if e.id != 0 {
                out["id"] = json!(e.id);
            }
            out
        }
    }
}

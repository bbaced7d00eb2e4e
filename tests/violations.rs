//! Protocol violations below the JSON level, sent as raw bytes: each ends
//! the offending session at once as a violation (an `error` and the door's
//! close, the peer told `byebye`, the role freed, the token dead), never as
//! an abrupt drop held away for a resume; bystanders keep relaying.

mod common;

use common::raw_grpc::{self, grpc_frame};
use common::{TestClient, TestGateway, finish, paired, still_relaying};
use serde_json::{Value, json};
use signalgate_client::Door;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A WebSocket client that writes frames byte by byte as given.
struct RawWebSocket {
    stream: TcpStream,
    buffered: Vec<u8>,
}

/// A frame the server sent: opcode and payload.
#[derive(Debug)]
enum ServerFrame {
    Text(Value),
    Close(Option<u16>),
    /// A frame of another kind (a pong, a binary frame).
    Other,
    /// The connection ended without a close frame.
    Eof,
}

impl RawWebSocket {
    async fn connect(gateway: &TestGateway) -> RawWebSocket {
        let mut stream = TcpStream::connect(gateway.address).await.expect("connect");
        stream
            .write_all(
                b"GET /ws HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                  Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            )
            .await
            .expect("upgrade");
        let mut socket = RawWebSocket {
            stream,
            buffered: Vec::new(),
        };
        let head_end = loop {
            if let Some(at) = socket.buffered.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(socket.fill().await, "the upgrade was not answered");
        };
        let head = String::from_utf8_lossy(&socket.buffered[..head_end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        socket.buffered.drain(..head_end);
        socket
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(common::EVENT_TIMEOUT, self.stream.read(&mut chunk))
            .await
            .expect("in time")
            .unwrap_or(0);
        self.buffered.extend_from_slice(&chunk[..read]);
        read > 0
    }

    /// A frame: `first` is FIN/RSV/opcode; masked unless `masked` is false.
    fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
        let mut bytes = vec![first];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            len @ 0..=125 => bytes.push(mask_bit | len as u8),
            len => {
                bytes.push(mask_bit | 126);
                bytes.extend_from_slice(&(len as u16).to_be_bytes());
            }
        }
        if masked {
            let key = [0x12, 0x34, 0x56, 0x78];
            bytes.extend_from_slice(&key);
            bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            bytes.extend_from_slice(payload);
        }
        bytes
    }

    async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    async fn send_text(&mut self, value: &Value) {
        let frame = Self::frame(0x81, value.to_string().as_bytes(), true);
        self.send_bytes(&frame).await;
    }

    async fn next(&mut self) -> ServerFrame {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buffered) {
                self.buffered.drain(..used);
                return frame;
            }
            if !self.fill().await {
                return ServerFrame::Eof;
            }
        }
    }

    async fn expect_event(&mut self, name: &str) -> Value {
        match self.next().await {
            ServerFrame::Text(event) if event["event"] == name => event,
            other => panic!("expected {name}, got {other:?}"),
        }
    }
}

/// One unmasked server frame at the start of `bytes`, and its length.
fn parse_server_frame(bytes: &[u8]) -> Option<(ServerFrame, usize)> {
    let (&first, rest) = bytes.split_first()?;
    let (&second, rest) = rest.split_first()?;
    let (len, header) = match second & 0x7f {
        126 => (
            u16::from_be_bytes([*rest.first()?, *rest.get(1)?]) as usize,
            4,
        ),
        127 => return None,
        len => (len as usize, 2),
    };
    let payload = bytes.get(header..header + len)?;
    let frame = match first & 0x0f {
        0x1 => ServerFrame::Text(serde_json::from_slice(payload).expect("JSON text")),
        0x8 => ServerFrame::Close(
            (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])),
        ),
        _ => ServerFrame::Other,
    };
    Some((frame, header + len))
}

/// Each frame breaks RFC 6455 in its own way.
fn violations() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "unmasked client frame",
            RawWebSocket::frame(0x81, br#"{"event":"ipaddr"}"#, false),
        ),
        (
            "RSV1 without an extension",
            RawWebSocket::frame(0xC1, br#"{"event":"ipaddr"}"#, true),
        ),
        (
            "a 126-byte ping",
            RawWebSocket::frame(0x89, &[b'p'; 126], true),
        ),
        ("a reserved opcode", RawWebSocket::frame(0x83, b"x", true)),
        ("a fragmented ping", RawWebSocket::frame(0x09, b"x", true)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_protocol_violations_close_with_1002() {
    let gateway = TestGateway::start().await;
    let (mut web, mut app) = paired(&gateway, "bystander", Door::Ws, Door::Grpc).await;
    for (n, (what, bytes)) in violations().into_iter().enumerate() {
        let uid = format!("violator-{n}");
        let mut peer = gateway.connect(Door::Ws).await;
        peer.register(&uid, "web").await;
        let mut raw = RawWebSocket::connect(&gateway).await;
        let welcome = raw.expect_event("welcome").await;
        let token = welcome["data"]["resumeToken"]
            .as_str()
            .expect("token")
            .to_owned();
        raw.send_text(&json!({"event": "register", "data": {"uid": uid, "type": 1}, "id": 1}))
            .await;
        raw.expect_event("registered").await;
        raw.expect_event("syncfrom").await;
        raw.expect_event("ack").await;
        raw.send_bytes(&bytes).await;
        let error = raw.expect_event("error").await;
        assert_eq!(error["data"]["code"], "BAD_REQUEST", "{what}: {error}");
        match raw.next().await {
            ServerFrame::Close(code) => assert_eq!(code, Some(1002), "{what}"),
            other => panic!("{what}: expected a 1002 close, got {other:?}"),
        }
        // Ended at once: the peer hears byebye, not peer_away.
        assert_eq!(peer.expect_next_named_any().await, "byebye", "{what}");
        let mut late = gateway.connect(Door::Grpc).await;
        late.send(
            "resume",
            Some(json!({"token": token, "last_seq": 0})),
            Some(9),
        )
        .await;
        late.expect_error("RESUME_FAILED", Some(9)).await;
        late.close().await;
        peer.close().await;
    }
    still_relaying(&mut web, &mut app).await;
    finish(gateway, web, app).await;
}

impl TestClient {
    /// The name of the next event other than `syncfrom`.
    async fn expect_next_named_any(&mut self) -> String {
        loop {
            let event = self.next_event().await;
            let name = event["event"].as_str().unwrap_or_default().to_owned();
            if name != "syncfrom" {
                return name;
            }
        }
    }
}

/// A raw HTTP/2 `Connect` stream registered as the app of `uid`: what it
/// read so far is consumed (welcome, registered, syncfrom, ack).
struct RawGrpc {
    _client: h2::client::SendRequest<bytes::Bytes>,
    stream: h2::SendStream<bytes::Bytes>,
    body: h2::RecvStream,
    buffered: Vec<u8>,
}

impl RawGrpc {
    async fn register(gateway: &TestGateway, uid: &str) -> RawGrpc {
        let (client, mut stream, response) = raw_grpc::connect_stream(gateway).await;
        stream
            .send_data(
                grpc_frame(false, &raw_grpc::register_app(uid, 1)).into(),
                false,
            )
            .expect("data");
        let body = response.await.expect("response").into_body();
        let mut raw = RawGrpc {
            _client: client,
            stream,
            body,
            buffered: Vec::new(),
        };
        for expected in ["welcome", "registered", "syncfrom", "ack"] {
            let event = raw.next_event().await.expect("an event");
            assert_eq!(event_name(&event), expected, "{event:?}");
        }
        raw
    }

    /// The next `ServerEvent`, or `None` at the end of the body.
    async fn next_event(&mut self) -> Option<signalgate::proto::v1::ServerEvent> {
        use prost::Message as _;
        loop {
            if self.buffered.len() >= 5 {
                let len = u32::from_be_bytes(self.buffered[1..5].try_into().expect("4")) as usize;
                if self.buffered.len() >= 5 + len {
                    let message: Vec<u8> = self.buffered.drain(..5 + len).skip(5).collect();
                    return Some(
                        signalgate::proto::v1::ServerEvent::decode(&message[..]).expect("decode"),
                    );
                }
            }
            let chunk = tokio::time::timeout(common::EVENT_TIMEOUT, self.body.data())
                .await
                .expect("in time")?
                .expect("data");
            let _ = self.body.flow_control().release_capacity(chunk.len());
            self.buffered.extend_from_slice(&chunk);
        }
    }

    /// The stream's `grpc-status`, once the body has ended.
    async fn status(&mut self) -> Option<String> {
        let trailers = tokio::time::timeout(common::EVENT_TIMEOUT, self.body.trailers())
            .await
            .expect("in time")
            .expect("trailers")?;
        trailers
            .get("grpc-status")
            .map(|value| value.to_str().expect("ascii").to_owned())
    }
}

fn event_name(event: &signalgate::proto::v1::ServerEvent) -> &'static str {
    use signalgate::proto::v1::server_event::Event;
    match event.event {
        Some(Event::Welcome(_)) => "welcome",
        Some(Event::Registered(_)) => "registered",
        Some(Event::Syncfrom(_)) => "syncfrom",
        Some(Event::Ack(_)) => "ack",
        Some(Event::Error(_)) => "error",
        _ => "other",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_broken_framing_ends_the_session_with_bad_request() {
    let gateway = TestGateway::start().await;
    let (mut web, mut app) = paired(&gateway, "bystander", Door::Ws, Door::Grpc).await;
    let ipaddr = {
        use prost::Message as _;
        use signalgate::proto::v1 as pb;
        pb::ClientEvent {
            id: 2,
            event: Some(pb::client_event::Event::Ipaddr(pb::IpAddrRequest {})),
        }
        .encode_to_vec()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "the compressed flag without grpc-encoding",
            grpc_frame(true, &ipaddr),
        ),
        ("an invalid compressed flag", {
            let mut frame = grpc_frame(false, &ipaddr);
            frame[0] = 7;
            frame
        }),
        (
            "a message cut short by END_STREAM",
            grpc_frame(false, &ipaddr)[..4].to_vec(),
        ),
    ];
    for (n, (what, bytes)) in cases.into_iter().enumerate() {
        let uid = format!("framing-{n}");
        let mut peer = gateway.connect(Door::Ws).await;
        peer.register(&uid, "web").await;
        let mut raw = RawGrpc::register(&gateway, &uid).await;
        raw.stream
            .send_data(bytes.into(), true)
            .expect("send the broken frame");
        let error = raw.next_event().await.expect("an error event");
        match &error.event {
            Some(signalgate::proto::v1::server_event::Event::Error(error)) => {
                assert_eq!(error.code, "BAD_REQUEST", "{what}: {error:?}");
            }
            other => panic!("{what}: expected an error, got {other:?}"),
        }
        assert!(raw.next_event().await.is_none(), "{what}");
        assert_eq!(
            raw.status().await.as_deref(),
            Some("3"),
            "{what}: INVALID_ARGUMENT"
        );
        // Ended at once: the peer hears byebye, not peer_away.
        assert_eq!(peer.expect_next_named_any().await, "byebye", "{what}");
        peer.close().await;
    }
    still_relaying(&mut web, &mut app).await;
    finish(gateway, web, app).await;
}

/// socketioxide's parser closes the transport on a packet it cannot read
/// (before the door sees it, so no `error` can name it): the session ends
/// at once as a violation, the peer hears `byebye`, the token is dead.
/// This pins the documented decision (docs/PROTOCOL.md, Socket.IO).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_unreadable_packets_end_the_session_at_once() {
    use signalgate_client::{Closed, Incoming};
    use tokio_tungstenite::tungstenite::Message;
    let gateway = TestGateway::start().await;
    let (mut web, mut app) = paired(&gateway, "bystander", Door::Ws, Door::Grpc).await;
    let packets = [
        r#"42["message","#,
        r#"42{"event":"message"}"#,
        r#"42[17,1]"#,
    ];
    for (n, packet) in packets.into_iter().enumerate() {
        let uid = format!("unreadable-{n}");
        let (mut peer, mut sender) = paired(&gateway, &uid, Door::Ws, Door::SocketIo).await;
        let token = sender.resume_token();
        let signalgate_client::Client::SocketIo(raw) = &mut sender.client else {
            panic!("a Socket.IO client");
        };
        raw.send_raw(Message::text(packet)).await.expect("send");
        match tokio::time::timeout(common::EVENT_TIMEOUT, raw.recv())
            .await
            .expect("in time")
            .expect("recv")
        {
            Incoming::Closed(Closed::SocketIo(_)) => {}
            other => panic!("{packet}: expected the transport closed, got {other:?}"),
        }
        assert_eq!(peer.expect_next_named_any().await, "byebye", "{packet}");
        let mut late = gateway.connect(Door::Ws).await;
        late.send(
            "resume",
            Some(json!({"token": token, "last_seq": 0})),
            Some(3),
        )
        .await;
        late.expect_error("RESUME_FAILED", Some(3)).await;
        late.close().await;
        peer.close().await;
    }
    still_relaying(&mut web, &mut app).await;
    finish(gateway, web, app).await;
}

/// A Socket.IO acknowledgement id beyond what socketioxide holds (a signed
/// 64-bit integer) cannot be answered, so the packet is refused as
/// unreadable (patches/README.md): the transport closes at once, nothing is
/// delivered without its answer, and the peer hears `byebye`. An id of
/// 2^63-1 is still answered. This pins the documented decision
/// (docs/PROTOCOL.md, Socket.IO).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_ack_ids_past_i64_end_the_session() {
    use signalgate_client::{Closed, Incoming};
    use tokio_tungstenite::tungstenite::Message;
    let gateway = TestGateway::start().await;
    let (mut peer, mut sender) = paired(&gateway, "huge-ack", Door::Ws, Door::SocketIo).await;
    let signalgate_client::Client::SocketIo(raw) = &mut sender.client else {
        panic!("a Socket.IO client");
    };
    raw.send_raw(Message::text(r#"429223372036854775807["message",1]"#))
        .await
        .expect("send");
    assert_eq!(peer.expect("message").await, json!(1));
    match tokio::time::timeout(common::EVENT_TIMEOUT, raw.recv())
        .await
        .expect("in time")
        .expect("recv")
    {
        Incoming::Event(event) => {
            assert_eq!(event["event"], "ack", "{event}");
            assert_eq!(event["id"], json!(9_223_372_036_854_775_807u64), "{event}");
        }
        other => panic!("{other:?}"),
    }
    for id in ["9223372036854775808", "18446744073709551616"] {
        raw.send_raw(Message::text(format!(r#"42{id}["message",2]"#)))
            .await
            .expect("send");
    }
    match tokio::time::timeout(common::EVENT_TIMEOUT, raw.recv())
        .await
        .expect("in time")
        .expect("recv")
    {
        Incoming::Closed(Closed::SocketIo(_)) => {}
        other => panic!("expected the transport closed, got {other:?}"),
    }
    assert_eq!(peer.expect_next_named_any().await, "byebye");
    peer.close().await;
    gateway.assert_empty().await;
}

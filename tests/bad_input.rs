//! Bad input over each door: every case gets its exact error (or close code
//! or status), the process keeps serving, an unrelated pair keeps relaying,
//! and nothing leaks.

mod common;

use std::time::Duration;

use common::{TestClient, TestGateway, finish, http_get, paired, still_relaying};
use serde_json::json;
use signalgate::proto::v1::{self as pb, client_event};
use signalgate_client::{Client, Closed, Door, GrpcClient, Incoming, SocketIoClient, WsClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// A well-behaved pair that must keep relaying while others misbehave.
async fn bystanders(gateway: &TestGateway) -> (TestClient, TestClient) {
    paired(gateway, "bystander", Door::Ws, Door::Grpc).await
}

/// A raw WebSocket client (to send arbitrary frames), its welcome consumed.
async fn ws(gateway: &TestGateway) -> WsClient {
    let mut raw = WsClient::connect(gateway.address).await.expect("connect");
    match raw.recv().await.expect("welcome") {
        Incoming::Event(event) => assert_eq!(event["event"], "welcome"),
        other => panic!("{other:?}"),
    }
    raw
}

async fn next_error(raw: &mut WsClient) -> serde_json::Value {
    match tokio::time::timeout(common::EVENT_TIMEOUT, raw.recv())
        .await
        .expect("in time")
        .expect("recv")
    {
        Incoming::Event(event) => {
            assert_eq!(event["event"], "error", "{event}");
            event
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

async fn next_close(raw: &mut WsClient) -> Option<(u16, String)> {
    match tokio::time::timeout(common::EVENT_TIMEOUT, raw.recv())
        .await
        .expect("in time")
        .expect("recv")
    {
        Incoming::Closed(Closed::WebSocket(frame)) => frame,
        other => panic!("expected a close, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_malformed_frames_get_bad_request_and_the_session_survives() {
    let gateway = TestGateway::start().await;
    let (mut web, mut app) = bystanders(&gateway).await;
    let mut raw = ws(&gateway).await;
    let cases: &[(&str, Option<u64>)] = &[
        ("not json", None),
        ("[1, 2]", None),
        ("\"register\"", None),
        ("{\"data\": 1}", None),
        ("{\"data\": 1, \"id\": 4}", Some(4)),
        ("{\"event\": \"fly\", \"id\": 5}", Some(5)),
        ("{\"event\": 17}", None),
        ("{\"event\": \"ipaddr\", \"id\": 0}", None),
        ("{\"event\": \"ipaddr\", \"id\": -1}", None),
        ("{\"event\": \"ipaddr\", \"id\": 1.5}", None),
        ("{\"event\": \"ipaddr\", \"id\": \"7\"}", None),
        ("{\"event\": \"register\", \"id\": 8}", Some(8)),
        (
            "{\"event\": \"register\", \"data\": \"alice\", \"id\": 9}",
            Some(9),
        ),
        (
            "{\"event\": \"register\", \"data\": {\"uid\": \"a\"}, \"id\": 10}",
            Some(10),
        ),
        (
            "{\"event\": \"register\", \"data\": {\"uid\": {}, \"type\": 0}, \"id\": 11}",
            Some(11),
        ),
        (
            "{\"event\": \"register\", \"data\": {\"uid\": \"a\", \"type\": 2}, \"id\": 12}",
            Some(12),
        ),
        (
            "{\"event\": \"register\", \"data\": {\"uid\": \"a\", \"type\": \"admin\"}, \"id\": 13}",
            Some(13),
        ),
        (
            "{\"event\": \"transfile\", \"data\": {\"size\": 10}, \"id\": 14}",
            Some(14),
        ),
        (
            "{\"event\": \"transfile\", \"data\": {\"size\": -1, \"name\": \"x\"}, \"id\": 15}",
            Some(15),
        ),
        (
            "{\"event\": \"ctrlSendSpeed\", \"data\": \"fast\", \"id\": 16}",
            Some(16),
        ),
        (
            "{\"event\": \"ctrlSendSpeed\", \"data\": -5, \"id\": 17}",
            Some(17),
        ),
        (
            "{\"event\": \"ctrlSendSpeed\", \"data\": 1.5, \"id\": 18}",
            Some(18),
        ),
        ("{\"event\": \"ctrlSendSpeed\", \"id\": 19}", Some(19)),
        // Unparseable, but the id is unambiguous: the error names it.
        (r#"{"event":"ipaddr","event":"nope","id":20}"#, Some(20)),
        (r#"{"id":21,"event":"ipaddr","event":"nope"}"#, Some(21)),
        (r#"{"id":22,"event":"ipaddr","data":"#, Some(22)),
        (r#"{"id":23,"event":"ipaddr","id":23,"id":23}"#, Some(23)),
        // Ambiguous or unreadable ids: none.
        (r#"{"id":24,"event":"ipaddr","id":25}"#, None),
        (r#"{"id":-1,"event":"ipaddr","event":"x"}"#, None),
        (r#"{"event":"ipaddr","event":"nope","id":0}"#, None),
    ];
    for (text, id) in cases {
        raw.send_raw(Message::text(*text)).await.expect("send");
        let error = next_error(&mut raw).await;
        assert_eq!(error["data"]["code"], "BAD_REQUEST", "{text}: {error}");
        assert_eq!(
            error.get("id").and_then(|v| v.as_u64()),
            *id,
            "{text}: {error}"
        );
    }
    // The session is still usable: it registers and pairs.
    raw.send(&json!({"event": "register", "data": {"uid": "recovered", "type": 1}}))
        .await
        .expect("send");
    match raw.recv().await.expect("recv") {
        Incoming::Event(event) => assert_eq!(event["event"], "registered"),
        other => panic!("{other:?}"),
    }
    still_relaying(&mut web, &mut app).await;
    raw.close().await;
    finish(gateway, web, app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_binary_frame_is_refused_with_1003() {
    let gateway = TestGateway::start().await;
    let (mut web, mut app) = bystanders(&gateway).await;
    let mut raw = ws(&gateway).await;
    raw.send_raw(Message::binary(vec![1u8, 2, 3]))
        .await
        .expect("send");
    let error = next_error(&mut raw).await;
    assert_eq!(error["data"]["code"], "BAD_REQUEST");
    let (code, _) = next_close(&mut raw).await.expect("close frame");
    assert_eq!(code, 1003);
    still_relaying(&mut web, &mut app).await;
    finish(gateway, web, app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_oversized_message_is_refused_with_1009() {
    let gateway = TestGateway::start().await;
    let (mut web, mut app) = bystanders(&gateway).await;
    let mut raw = ws(&gateway).await;
    let big = json!({"event": "message", "data": "x".repeat(64 * 1024)}).to_string();
    raw.send_raw(Message::text(big)).await.expect("send");
    let error = next_error(&mut raw).await;
    assert_eq!(error["data"]["code"], "MESSAGE_TOO_LARGE");
    let (code, _) = next_close(&mut raw).await.expect("close frame");
    assert_eq!(code, 1009);
    still_relaying(&mut web, &mut app).await;
    finish(gateway, web, app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_message_just_under_the_limit_is_relayed() {
    let gateway = TestGateway::start().await;
    let (mut web, mut app) = paired(&gateway, "big", Door::Ws, Door::Ws).await;
    let envelope_overhead = json!({"event": "message", "data": ""}).to_string().len();
    let data = "y".repeat(64 * 1024 - envelope_overhead);
    web.send("message", Some(json!(data)), None).await;
    assert_eq!(app.expect("message").await, json!(data));
    finish(gateway, web, app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_invalid_utf8_is_refused_with_1007() {
    let gateway = TestGateway::start().await;
    let (mut web, mut app) = bystanders(&gateway).await;
    let mut raw = ws(&gateway).await;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    raw.send_raw(Message::Frame(frame)).await.expect("send");
    let error = next_error(&mut raw).await;
    assert_eq!(error["data"]["code"], "BAD_REQUEST");
    let (code, _) = next_close(&mut raw).await.expect("close frame");
    assert_eq!(code, 1007);
    still_relaying(&mut web, &mut app).await;
    finish(gateway, web, app).await;
}

async fn grpc_raw(gateway: &TestGateway) -> GrpcClient {
    let mut client = GrpcClient::connect(gateway.address).await.expect("connect");
    match client.recv().await.expect("welcome") {
        Incoming::Event(event) => assert_eq!(event["event"], "welcome"),
        other => panic!("{other:?}"),
    }
    client
}

async fn grpc_next(client: &mut GrpcClient) -> Incoming {
    tokio::time::timeout(common::EVENT_TIMEOUT, client.recv())
        .await
        .expect("in time")
        .expect("recv")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_malformed_events_get_bad_request_and_the_session_survives() {
    let gateway = TestGateway::start().await;
    let (mut web, mut app) = bystanders(&gateway).await;
    let mut client = grpc_raw(&gateway).await;
    let nan = prost_types::Value {
        kind: Some(prost_types::value::Kind::NumberValue(f64::NAN)),
    };
    let cases = [
        pb::ClientEvent { id: 1, event: None },
        pb::ClientEvent {
            id: 2,
            event: Some(client_event::Event::Register(pb::Register {
                uid: "a".into(),
                role: 0,
            })),
        },
        pb::ClientEvent {
            id: 3,
            event: Some(client_event::Event::Register(pb::Register {
                uid: "a".into(),
                role: 7,
            })),
        },
        pb::ClientEvent {
            id: 4,
            event: Some(client_event::Event::Register(pb::Register {
                uid: String::new(),
                role: 1,
            })),
        },
        pb::ClientEvent {
            id: 5,
            event: Some(client_event::Event::Message(nan)),
        },
    ];
    for case in cases {
        let id = case.id;
        client.send_event(case).await.expect("send");
        match grpc_next(&mut client).await {
            Incoming::Event(event) => {
                assert_eq!(event["event"], "error", "{event}");
                assert_eq!(event["data"]["code"], "BAD_REQUEST", "{event}");
                assert_eq!(event["id"], id, "{event}");
            }
            other => panic!("{other:?}"),
        }
    }
    client
        .send(&json!({"event": "register", "data": {"uid": "recovered", "type": 0}}))
        .await
        .expect("send");
    match grpc_next(&mut client).await {
        Incoming::Event(event) => assert_eq!(event["event"], "registered"),
        other => panic!("{other:?}"),
    }
    still_relaying(&mut web, &mut app).await;
    client.close().await;
    finish(gateway, web, app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_oversized_message_ends_the_stream_with_out_of_range() {
    let gateway = TestGateway::start().await;
    let (mut web, mut app) = bystanders(&gateway).await;
    let mut client = grpc_raw(&gateway).await;
    client
        .send(&json!({"event": "message", "data": "x".repeat(64 * 1024)}))
        .await
        .expect("send");
    match grpc_next(&mut client).await {
        Incoming::Event(event) => assert_eq!(event["data"]["code"], "MESSAGE_TOO_LARGE", "{event}"),
        other => panic!("{other:?}"),
    }
    match grpc_next(&mut client).await {
        Incoming::Closed(Closed::Grpc(code, _)) => assert_eq!(code, tonic::Code::OutOfRange),
        other => panic!("{other:?}"),
    }
    still_relaying(&mut web, &mut app).await;
    drop(client);
    finish(gateway, web, app).await;
}

/// Bytes that are not a `ClientEvent`: field 2 (`register`, a message) sent
/// as a varint.
#[derive(Clone, PartialEq, prost::Message)]
struct NotAClientEvent {
    #[prost(uint64, tag = "2")]
    register: u64,
}

/// A `ClientEvent` whose `message` value (field 4) is a string of invalid
/// UTF-8. The server keeps relayed values encoded, so its door, not prost,
/// finds this out; the outcome must be the same.
#[derive(Clone, PartialEq, prost::Message)]
struct BrokenValueEvent {
    #[prost(uint64, tag = "1")]
    id: u64,
    /// The value's encoding: `string_value` (field 3), 1 byte, 0xFF.
    #[prost(bytes = "vec", tag = "4")]
    message: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_undecodable_bytes_end_the_stream_with_invalid_argument() {
    let gateway = TestGateway::start().await;
    let (mut web, mut app) = bystanders(&gateway).await;
    ends_with_invalid_argument(&gateway, NotAClientEvent { register: 5 }).await;
    let broken = BrokenValueEvent {
        id: 9,
        message: vec![(3 << 3) | 2, 1, 0xFF],
    };
    ends_with_invalid_argument(&gateway, broken).await;
    still_relaying(&mut web, &mut app).await;
    finish(gateway, web, app).await;
}

/// Sends `message` on a new `Connect` stream: after the welcome, the
/// stream answers `error BAD_REQUEST` and ends with `INVALID_ARGUMENT`.
async fn ends_with_invalid_argument<M>(gateway: &TestGateway, message: M)
where
    M: prost::Message + Default + Send + 'static,
{
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", gateway.address))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    sender.send(message).await.expect("queue");
    let codec = tonic_prost::ProstCodec::<M, pb::ServerEvent>::default();
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/signalgate.v1.Signaling/Connect");
    let response = grpc
        .streaming(
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(receiver)),
            path,
            codec,
        )
        .await
        .expect("stream opens");
    let mut events = response.into_inner();
    let welcome = events.message().await.expect("ok").expect("welcome");
    assert!(matches!(
        welcome.event,
        Some(pb::server_event::Event::Welcome(_))
    ));
    let error = events.message().await.expect("ok").expect("error event");
    match error.event {
        Some(pb::server_event::Event::Error(error)) => assert_eq!(error.code, "BAD_REQUEST"),
        other => panic!("{other:?}"),
    }
    let status = events
        .message()
        .await
        .expect_err("stream ends with a status");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    drop(sender);
}

#[tokio::test]
async fn http_paths() {
    let gateway = TestGateway::start().await;
    let health = http_get(&gateway, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok\n"), "{health}");
    let missing = http_get(&gateway, "/nope").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    // /ws without an upgrade is refused, not served.
    let plain = http_get(&gateway, "/ws").await;
    assert!(!plain.starts_with("HTTP/1.1 2"), "{plain}");
    gateway.assert_empty().await;
}

#[tokio::test]
async fn client_door_matches_its_constructor() {
    let gateway = TestGateway::start().await;
    for door in Door::ALL {
        let client = Client::connect(door, gateway.address)
            .await
            .expect("connect");
        assert_eq!(client.door(), door);
        client.abort();
    }
    gateway.assert_empty().await;
}

/// A raw Socket.IO client, its welcome consumed.
async fn socketio_raw(gateway: &TestGateway) -> SocketIoClient {
    let mut client = SocketIoClient::connect(gateway.address)
        .await
        .expect("connect");
    match client.recv().await.expect("welcome") {
        Incoming::Event(event) => assert_eq!(event["event"], "welcome"),
        other => panic!("{other:?}"),
    }
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_malformed_events_get_bad_request_and_the_session_survives() {
    let gateway = TestGateway::start().await;
    let (mut web, mut app) = bystanders(&gateway).await;
    let mut client = socketio_raw(&gateway).await;
    // With an acknowledgement id the error arrives through the callback;
    // without one as an `error` event.
    let cases: &[(&str, Option<u64>)] = &[
        (r#"421["register"]"#, Some(1)),
        (r#"422["register",{"uid":"a","type":9}]"#, Some(2)),
        (r#"423["fly",{}]"#, Some(3)),
        (r#"424["ctrlSendSpeed","fast"]"#, Some(4)),
        (r#"425["transfile",{"name":"x"}]"#, Some(5)),
        (r#"42["register",{"uid":""}]"#, None),
        (r#"42["nope"]"#, None),
    ];
    for (packet, id) in cases {
        client.send_raw(Message::text(*packet)).await.expect("send");
        match tokio::time::timeout(common::EVENT_TIMEOUT, client.recv())
            .await
            .expect("in time")
            .expect("recv")
        {
            Incoming::Event(event) => {
                assert_eq!(event["event"], "error", "{packet}: {event}");
                assert_eq!(event["data"]["code"], "BAD_REQUEST", "{packet}: {event}");
                assert_eq!(
                    event.get("id").and_then(|v| v.as_u64()),
                    *id,
                    "{packet}: {event}"
                );
            }
            other => panic!("{packet}: {other:?}"),
        }
    }
    // A binary attachment is refused: JSON only.
    client
        .send_raw(Message::text(
            r#"451-6["message",{"_placeholder":true,"num":0}]"#,
        ))
        .await
        .expect("send");
    client
        .send_raw(Message::binary(vec![1u8, 2, 3]))
        .await
        .expect("send");
    match tokio::time::timeout(common::EVENT_TIMEOUT, client.recv())
        .await
        .expect("in time")
        .expect("recv")
    {
        Incoming::Event(event) => {
            assert_eq!(event["data"]["code"], "BAD_REQUEST", "{event}");
            assert_eq!(event["id"], 6, "{event}");
        }
        other => panic!("{other:?}"),
    }
    client
        .send(&json!({"event": "register", "data": {"uid": "recovered", "type": 1}, "id": 7}))
        .await
        .expect("send");
    for expected in ["registered", "ack"] {
        match client.recv().await.expect("recv") {
            Incoming::Event(event) => assert_eq!(event["event"], expected, "{event}"),
            other => panic!("{other:?}"),
        }
    }
    still_relaying(&mut web, &mut app).await;
    client.close().await;
    finish(gateway, web, app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_oversized_message_closes_the_transport() {
    let gateway = TestGateway::start().await;
    let (mut web, mut app) = bystanders(&gateway).await;
    let mut client = socketio_raw(&gateway).await;
    let big = format!(r#"42["message","{}"]"#, "x".repeat(64 * 1024));
    client.send_raw(Message::text(big)).await.expect("send");
    match tokio::time::timeout(common::EVENT_TIMEOUT, client.recv())
        .await
        .expect("in time")
        .expect("recv")
    {
        Incoming::Closed(Closed::SocketIo(_)) => {}
        other => panic!("{other:?}"),
    }
    still_relaying(&mut web, &mut app).await;
    finish(gateway, web, app).await;
}

/// Sends a raw HTTP request; returns the response head (and, for a closed
/// connection, the body).
async fn http_request(gateway: &TestGateway, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(gateway.address)
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("in time")
            .expect("read");
        response.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&response).into_owned();
        if read == 0 || common::response_complete(&text) {
            return text;
        }
    }
}

fn upgrade_request(path: &str, origin: Option<&str>) -> String {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{origin}\r\n"
    )
}

#[tokio::test]
async fn foreign_origins_are_refused_on_the_browser_doors() {
    let gateway = TestGateway::start_with(signalgate::Config {
        allowed_origins: vec![
            "https://app.example.com".into(),
            "http://localhost:*".into(),
        ],
        ..common::test_config()
    })
    .await;
    // Cross-site WebSocket hijacking: a foreign page's upgrade gets 403.
    let refused = http_request(
        &gateway,
        &upgrade_request("/ws", Some("https://evil.example")),
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    let refused = http_request(
        &gateway,
        &upgrade_request(
            "/socket.io/?EIO=4&transport=websocket",
            Some("https://evil.example"),
        ),
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    let polling =
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: test\r\nConnection: close\r\n";
    let refused = http_request(
        &gateway,
        &format!("{polling}Origin: https://evil.example\r\n\r\n"),
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    // Allowed origins (exact and wildcard) and native clients (no Origin) get in.
    for origin in [
        Some("https://app.example.com"),
        Some("http://localhost:5173"),
        None,
    ] {
        let accepted = http_request(&gateway, &upgrade_request("/ws", origin)).await;
        assert!(
            accepted.starts_with("HTTP/1.1 101"),
            "{origin:?}: {accepted}"
        );
    }
    let allowed = http_request(
        &gateway,
        &format!("{polling}Origin: https://app.example.com\r\n\r\n"),
    )
    .await;
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
    assert!(
        allowed
            .to_ascii_lowercase()
            .contains("access-control-allow-origin: https://app.example.com"),
        "{allowed}"
    );
    gateway.assert_empty().await;
}

/// The WebSocket protocol edge cases of the Autobahn suite that matter for a
/// JSON door, as frames sent by hand.
mod websocket_protocol {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    fn fragment(text: &str, opcode: OpCode, last: bool) -> Message {
        Message::Frame(Frame::message(text.as_bytes().to_vec(), opcode, last))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fragmented_text_is_reassembled_and_pings_between_fragments_are_answered() {
        let gateway = TestGateway::start().await;
        let mut raw = ws(&gateway).await;
        let text = r#"{"event":"ipaddr","id":42}"#;
        let (first, rest) = text.split_at(10);
        let (middle, last) = rest.split_at(8);
        raw.send_raw(fragment(first, OpCode::Data(Data::Text), false))
            .await
            .expect("first");
        raw.send_raw(Message::Ping(b"between".to_vec().into()))
            .await
            .expect("ping");
        raw.send_raw(fragment(middle, OpCode::Data(Data::Continue), false))
            .await
            .expect("middle");
        raw.send_raw(fragment(last, OpCode::Data(Data::Continue), true))
            .await
            .expect("last");
        // The client library answers our pings for us; the pong to ours is
        // checked by reading raw frames below.
        let mut answered = Vec::new();
        while answered.len() < 2 {
            match tokio::time::timeout(common::EVENT_TIMEOUT, raw.recv())
                .await
                .expect("in time")
                .expect("recv")
            {
                Incoming::Event(event) => {
                    answered.push(event["event"].as_str().unwrap_or_default().to_owned())
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(answered, ["ipaddr", "ack"]);
        raw.close().await;
        gateway.assert_empty().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_ping_is_answered_with_its_payload() {
        let gateway = TestGateway::start().await;
        let url = format!("ws://{}/ws", gateway.address);
        let (mut socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        use futures_util::{SinkExt, StreamExt};
        socket
            .send(Message::Ping(b"are you there".to_vec().into()))
            .await
            .expect("ping");
        loop {
            match socket.next().await.expect("frame").expect("ok") {
                Message::Pong(payload) => {
                    assert_eq!(&payload[..], b"are you there");
                    break;
                }
                Message::Text(_) => continue,
                other => panic!("{other:?}"),
            }
        }
        let _ = socket.close(None).await;
        gateway.assert_empty().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_clean_close_handshake_is_answered_in_kind() {
        let gateway = TestGateway::start().await;
        let url = format!("ws://{}/ws", gateway.address);
        let (mut socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        use futures_util::{SinkExt, StreamExt};
        socket
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            })))
            .await
            .expect("close");
        let mut echoed = None;
        while let Some(frame) = socket.next().await {
            if let Ok(Message::Close(frame)) = frame {
                echoed = frame.map(|f| u16::from(f.code));
            }
        }
        assert_eq!(echoed, Some(1000));
        gateway.assert_empty().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_invalid_close_code_is_a_protocol_error() {
        let gateway = TestGateway::start().await;
        let (mut web, mut app) = bystanders(&gateway).await;
        let mut raw = ws(&gateway).await;
        // 1005 may never be sent on the wire.
        let close = Frame::close(Some(CloseFrame {
            code: CloseCode::from(1005),
            reason: "".into(),
        }));
        raw.send_raw(Message::Frame(close)).await.expect("send");
        match tokio::time::timeout(common::EVENT_TIMEOUT, raw.recv())
            .await
            .expect("in time")
            .expect("recv")
        {
            Incoming::Closed(Closed::WebSocket(frame)) => {
                // tungstenite answers with 1002 (protocol error) or drops the connection.
                if let Some((code, _)) = frame {
                    assert_eq!(code, 1002);
                }
            }
            other => panic!("{other:?}"),
        }
        still_relaying(&mut web, &mut app).await;
        finish(gateway, web, app).await;
    }
}

//! gRPC written by hand over the h2 crate, for tests that need what no
//! gRPC client sends: a reset stream on a live connection, broken framing.

use super::TestGateway;

/// A gRPC message frame: the compressed flag, the length, the bytes.
pub fn grpc_frame(compressed: bool, message: &[u8]) -> Vec<u8> {
    let mut frame = vec![u8::from(compressed)];
    frame.extend_from_slice(&u32::try_from(message.len()).expect("len").to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

/// A `Connect` stream on a new HTTP/2 connection: the connection's handle,
/// the request side, and the response to come.
pub async fn connect_stream(
    gateway: &TestGateway,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    h2::SendStream<bytes::Bytes>,
    h2::client::ResponseFuture,
) {
    let tcp = tokio::net::TcpStream::connect(gateway.address)
        .await
        .expect("tcp");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://{}/signalgate.v1.Signaling/Connect",
            gateway.address
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let (response, stream) = client.send_request(request, false).expect("send");
    (client, stream, response)
}

/// The encoded `register` of an app for `uid`, with request id `id`.
pub fn register_app(uid: &str, id: u64) -> Vec<u8> {
    use prost::Message as _;
    use signalgate::proto::v1 as pb;
    pb::ClientEvent {
        id,
        event: Some(pb::client_event::Event::Register(pb::Register {
            uid: uid.to_owned(),
            role: pb::Role::App as i32,
        })),
    }
    .encode_to_vec()
}

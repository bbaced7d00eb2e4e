//! Calling the admin API from tests: HTTP JSON over a plain HTTP/1.1
//! connection, and the generated tonic client with the token as metadata.

use std::net::SocketAddr;

use serde_json::Value;
use signalgate::proto::admin::admin_client::AdminClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::EVENT_TIMEOUT;

/// The admin token the admin tests run with.
pub const ADMIN_TOKEN: &str = "admin-token-for-tests";

/// The test configuration with the admin API on.
pub fn admin_config() -> signalgate::Config {
    signalgate::Config {
        admin_token: Some(ADMIN_TOKEN.into()),
        ..super::test_config()
    }
}

/// An HTTP answer: status, headers (lower-case names) and body.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with `extra` headers; the whole answer.
pub async fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: Option<&str>,
) -> HttpAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in extra {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or(""));
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tokio::time::timeout(EVENT_TIMEOUT, stream.read_to_string(&mut response))
        .await
        .expect("in time")
        .expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    HttpAnswer {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// An admin call with the right token; the JSON answer and its status.
pub async fn admin(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let text = body.map(|body| body.to_string());
    let answer = http(
        address,
        method,
        path,
        &[("Authorization", &bearer)],
        text.as_deref(),
    )
    .await;
    let json = answer.json();
    (answer.status, json)
}

/// The gRPC admin client, presenting `token`.
pub async fn admin_grpc(
    address: SocketAddr,
    token: Option<&str>,
) -> AdminClient<InterceptedService<Channel, impl tonic::service::Interceptor + Clone>> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let header = token.map(|token| {
        tonic::metadata::MetadataValue::try_from(format!("Bearer {token}")).expect("metadata")
    });
    AdminClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
        if let Some(header) = &header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    })
}

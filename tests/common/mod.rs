//! Shared test harness: the real gateway on 127.0.0.1:0 and real clients.
#![allow(dead_code)]

pub mod admin;
pub mod cluster;
pub mod raw_grpc;
pub mod receiver;
pub mod redis_cluster;

use std::net::SocketAddr;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use signalgate::core::{Census, Hub};
use signalgate::{Config, Gateway};
use signalgate_client::{Client, Closed, ConnectOptions, Door, Incoming, envelope};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a test waits for an expected event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a test listens to assert that nothing arrives.
pub const SILENCE: Duration = Duration::from_millis(200);

/// Panics on tokio's worker threads (`tokio-rt-worker`): the gateway's tasks (and the test
/// clients' connection tasks) run there, and tokio keeps a panicking task
/// from failing anything, so without this count such a panic would go
/// unnoticed once cleanup had happened.
static WORKER_PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_worker_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_worker = std::thread::current()
                .name()
                .is_some_and(|name| name.starts_with("tokio-"));
            if on_worker {
                WORKER_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default_hook(info);
        }));
    });
}

/// Fails the test if any task panicked on a runtime worker so far.
pub fn assert_no_task_panicked() {
    let panics = WORKER_PANICS.load(Ordering::SeqCst);
    assert_eq!(
        panics, 0,
        "{panics} task(s) panicked on a runtime worker (see the output above)"
    );
}

/// A gateway serving on an ephemeral port for the length of a test.
pub struct TestGateway {
    pub address: SocketAddr,
    pub hub: Hub,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// The configuration tests start from: loopback, ephemeral port, a fixed
/// `ipaddr` answer.
pub fn test_config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        advertise_ip: vec![
            "192.0.2.10".parse().expect("ip"),
            "198.51.100.7".parse().expect("ip"),
        ],
        shutdown_grace: Duration::from_secs(5),
        // Scenario tests send bursts; the rate limit has its own tests.
        rate_limit: 0.0,
        // Tests open Socket.IO connections in bursts from one address; the
        // handshake rate has its own tests.
        socketio_handshake_rate: 0.0,
        ..Config::default()
    }
}

impl TestGateway {
    pub async fn start() -> TestGateway {
        TestGateway::start_with(test_config()).await
    }

    pub async fn start_with(config: Config) -> TestGateway {
        count_worker_panics();
        let listener = TcpListener::bind(config.listen).await.expect("bind");
        let address = listener.local_addr().expect("local address");
        let gateway = Gateway::from_config(config).await.expect("gateway");
        let hub = gateway.hub();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(gateway.serve(listener, async {
            let _ = stopped.await;
        }));
        TestGateway {
            address,
            hub,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Connects a client and consumes its `welcome`.
    pub async fn connect(&self, door: Door) -> TestClient {
        self.connect_with_token(door, None).await
    }

    /// Connects a client presenting `token`, and consumes its `welcome`.
    pub async fn connect_with_token(&self, door: Door, token: Option<&str>) -> TestClient {
        let options = ConnectOptions {
            token: token.map(str::to_owned),
            ..ConnectOptions::default()
        };
        let client = Client::connect_with(door, self.address, &options)
            .await
            .expect("connect");
        let mut client = TestClient {
            client,
            door,
            welcome: Value::Null,
            last_seq: 0,
        };
        let welcome = client.expect("welcome").await;
        assert_eq!(welcome["message"], "Welcome!");
        assert!(welcome["id"].as_str().is_some_and(|id| !id.is_empty()));
        client.welcome = welcome;
        client
    }

    pub fn census(&self) -> Census {
        self.hub.census()
    }

    /// Waits until no session and no uid is left (cleanup runs in the
    /// background after a disconnect), failing with what leaked.
    pub async fn assert_empty(&self) {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let census = self.census();
            if census.is_empty() {
                assert_no_task_panicked();
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("the gateway still holds state: {census:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the census satisfies `done` (cleanup runs in the
    /// background), failing with the census if it never does.
    pub async fn wait_for_census(&self, done: impl Fn(&Census) -> bool) {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let census = self.census();
            if done(&census) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "census never settled: {census:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the gateway and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("gateway stops in time");
            result.expect("gateway task").expect("gateway serve");
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if !std::thread::panicking() {
            assert_no_task_panicked();
        }
    }
}

/// A client with assertion helpers.
pub struct TestClient {
    pub client: Client,
    pub door: Door,
    /// The data of the `welcome` this connection received.
    pub welcome: Value,
    /// The highest `seq` received (what a resume sends as `last_seq`).
    pub last_seq: u64,
}

impl TestClient {
    pub async fn send(&mut self, event: &str, data: Option<Value>, id: Option<u64>) {
        self.client
            .send(&envelope(event, data, id))
            .await
            .unwrap_or_else(|e| panic!("{} send {event}: {e}", self.door));
    }

    /// The next thing received, whatever it is.
    pub async fn next(&mut self) -> Incoming {
        let incoming = tokio::time::timeout(EVENT_TIMEOUT, self.client.recv())
            .await
            .unwrap_or_else(|_| panic!("{}: nothing received within {EVENT_TIMEOUT:?}", self.door))
            .expect("receive");
        if let Incoming::Event(event) = &incoming
            && event["event"] == "resumed"
        {
            // From here on the connection carries the resumed session's sequence.
            self.last_seq = 0;
        }
        if let Incoming::Event(event) = &incoming
            && let Some(seq) = event.get("seq").and_then(Value::as_u64)
        {
            // Non-decreasing: Socket.IO splits one `ipaddr` event (one seq)
            // into an emit per address.
            assert!(
                seq >= self.last_seq,
                "{}: seq went back from {} in {event}",
                self.door,
                self.last_seq
            );
            self.last_seq = seq;
        }
        incoming
    }

    /// The next event as an envelope; fails on a close.
    pub async fn next_event(&mut self) -> Value {
        match self.next().await {
            Incoming::Event(value) => value,
            Incoming::Closed(closed) => {
                panic!("{}: closed ({closed:?}) instead of an event", self.door)
            }
        }
    }

    /// The next event must be `name`; returns its data (null if absent).
    pub async fn expect(&mut self, name: &str) -> Value {
        let event = self.next_event().await;
        assert_eq!(
            event["event"], name,
            "{}: expected {name}, got {event}",
            self.door
        );
        event.get("data").cloned().unwrap_or(Value::Null)
    }

    /// Skips events until one named `name` arrives; returns its data.
    pub async fn expect_next_named(&mut self, name: &str) -> Value {
        loop {
            let event = self.next_event().await;
            if std::env::var_os("DEBUG_EVENTS").is_some() {
                eprintln!("{}: {event}", self.door);
            }
            if event["event"] == name {
                return event.get("data").cloned().unwrap_or(Value::Null);
            }
        }
    }

    /// The next event must be `ack {id}`.
    pub async fn expect_ack(&mut self, id: u64) {
        let event = self.next_event().await;
        assert_eq!(
            event["event"], "ack",
            "{}: expected ack {id}, got {event}",
            self.door
        );
        assert_eq!(
            event["id"], id,
            "{}: expected ack {id}, got {event}",
            self.door
        );
    }

    /// The next event must be an `error` with `code` (and `id`).
    pub async fn expect_error(&mut self, code: &str, id: Option<u64>) -> Value {
        let event = self.next_event().await;
        assert_eq!(
            event["event"], "error",
            "{}: expected error {code}, got {event}",
            self.door
        );
        assert_eq!(event["data"]["code"], code, "{}: got {event}", self.door);
        assert!(
            event["data"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "error messages explain themselves: {event}"
        );
        assert_eq!(
            event.get("id").and_then(Value::as_u64),
            id,
            "{}: error id in {event}",
            self.door
        );
        event
    }

    /// The connection must end now; returns how.
    pub async fn expect_closed(&mut self) -> Closed {
        match self.next().await {
            Incoming::Closed(closed) => closed,
            Incoming::Event(event) => panic!("{}: expected the end, got {event}", self.door),
        }
    }

    /// The resume token of this connection's `welcome`.
    pub fn resume_token(&self) -> String {
        self.welcome["resumeToken"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no resume token in {}", self.door, self.welcome))
            .to_owned()
    }

    /// Nothing may arrive for a short while.
    pub async fn expect_silence(&mut self) {
        if let Ok(received) = tokio::time::timeout(SILENCE, self.client.recv()).await {
            panic!("{}: expected silence, got {received:?}", self.door);
        }
    }

    /// Registers and returns the `registered` data.
    pub async fn register(&mut self, uid: &str, role: &str) -> Value {
        self.register_with_id(uid, role, None).await
    }

    /// Registers with request id `id` (then `ack {id}` follows
    /// `registered`, and is consumed); returns the `registered` data.
    pub async fn register_with_id(&mut self, uid: &str, role: &str, id: Option<u64>) -> Value {
        let seed_type = if role == "web" { 0 } else { 1 };
        self.send("register", Some(json!({"uid": uid, "type": seed_type})), id)
            .await;
        let registered = self.expect("registered").await;
        assert_eq!(registered["uid"], uid);
        assert_eq!(registered["role"], role);
        assert_eq!(registered["type"], seed_type);
        if let Some(id) = id {
            if role == "app" && registered["peerPresent"] == true {
                // The app's `syncfrom` comes before the ack.
                self.expect("syncfrom").await;
            }
            self.expect_ack(id).await;
        }
        registered
    }

    pub async fn close(self) {
        self.client.close().await;
    }

    pub fn abort(self) {
        self.client.abort();
    }
}

/// Something clients connect to: one gateway, or a cluster that picks a
/// node by the role the client will register as.
pub trait Connect {
    fn connect_as(&self, role: &str, door: Door) -> impl Future<Output = TestClient>;
}

impl Connect for TestGateway {
    async fn connect_as(&self, _role: &str, door: Door) -> TestClient {
        self.connect(door).await
    }
}

/// A web and an app client of `uid`, registered and paired (the app's
/// `syncfrom` consumed).
pub async fn paired(
    gateway: &impl Connect,
    uid: &str,
    web_door: Door,
    app_door: Door,
) -> (TestClient, TestClient) {
    paired_with_ids(gateway, uid, web_door, app_door, None).await
}

/// [`paired`], registering the web with request id `ids.0` and the app
/// with `ids.1` when `ids` is given (their acks consumed).
pub async fn paired_with_ids(
    gateway: &impl Connect,
    uid: &str,
    web_door: Door,
    app_door: Door,
    ids: Option<(u64, u64)>,
) -> (TestClient, TestClient) {
    let mut web = gateway.connect_as("web", web_door).await;
    let mut app = gateway.connect_as("app", app_door).await;
    let registered = web.register_with_id(uid, "web", ids.map(|i| i.0)).await;
    assert_eq!(registered["peerPresent"], false);
    let registered = app.register_with_id(uid, "app", ids.map(|i| i.1)).await;
    assert_eq!(registered["peerPresent"], true);
    if ids.is_none() {
        app.expect("syncfrom").await;
    }
    (web, app)
}

/// A bystander pair keeps relaying both ways (while others misbehave).
pub async fn still_relaying(web: &mut TestClient, app: &mut TestClient) {
    web.send("message", Some(json!({"still": "here"})), None)
        .await;
    assert_eq!(app.expect("message").await, json!({"still": "here"}));
    app.send("message", Some(json!(1)), None).await;
    assert_eq!(web.expect("message").await, json!(1));
}

/// Ends a bystander pair cleanly and checks that nothing leaked.
pub async fn finish(gateway: TestGateway, web: TestClient, mut app: TestClient) {
    web.close().await;
    app.expect("byebye").await;
    app.close().await;
    gateway.assert_empty().await;
}

/// `GET path` over a fresh HTTP/1.1 connection; the whole response.
pub async fn http_get(gateway: &TestGateway, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(gateway.address)
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tokio::time::timeout(EVENT_TIMEOUT, stream.read_to_string(&mut response))
        .await
        .expect("in time")
        .expect("read");
    response
}

/// The gateway binary built for these tests.
pub const BINARY: &str = env!("CARGO_BIN_EXE_signalgate");

/// Starts the real binary on an ephemeral loopback port with JSON logs and
/// `args`; returns the process and the address it logged.
pub fn spawn_gateway(args: &[&str]) -> (std::process::Child, SocketAddr) {
    let (child, address, _logs) = spawn_gateway_with_logs(args);
    (child, address)
}

/// [`spawn_gateway`], also handing over every JSON log line the gateway
/// writes after its address.
pub fn spawn_gateway_with_logs(
    args: &[&str],
) -> (
    std::process::Child,
    SocketAddr,
    std::sync::mpsc::Receiver<Value>,
) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(BINARY)
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn signalgate");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("the gateway logs its address")
            .expect("read");
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(address) = entry["fields"]["address"].as_str() {
            break address.parse().expect("address");
        }
    };
    // Keep draining the logs so the child never blocks on a full pipe.
    let (sender, logs) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Ok(entry) = serde_json::from_str::<Value>(&line) {
                let _ = sender.send(entry);
            }
        }
    });
    (child, address, logs)
}

/// A raw client of `door` at `address` (presenting `token`), its `welcome`
/// consumed.
pub async fn connected(door: Door, address: SocketAddr, token: Option<&str>) -> Client {
    connected_with_welcome(door, address, token).await.0
}

/// [`connected`], also returning the `welcome` event.
pub async fn connected_with_welcome(
    door: Door,
    address: SocketAddr,
    token: Option<&str>,
) -> (Client, Value) {
    let options = ConnectOptions {
        token: token.map(str::to_owned),
        ..ConnectOptions::default()
    };
    let mut client = Client::connect_with(door, address, &options)
        .await
        .expect("connect");
    match client.recv().await.expect("welcome") {
        Incoming::Event(event) => {
            assert_eq!(event["event"], "welcome");
            (client, event)
        }
        other => panic!("{other:?}"),
    }
}

/// Whether `text` holds a whole response: the head, and the body its
/// Content-Length announces (a 101 has none).
pub fn response_complete(text: &str) -> bool {
    let Some(head_end) = text.find("\r\n\r\n") else {
        return false;
    };
    let head = text[..head_end].to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    text.len() >= head_end + 4 + length
}

/// A connection attempt that the door must refuse as unauthenticated.
pub async fn assert_refused(gateway: &TestGateway, door: Door, token: Option<String>) {
    let options = ConnectOptions {
        token: token.clone(),
        ..ConnectOptions::default()
    };
    match Client::connect_with(door, gateway.address, &options).await {
        Err(signalgate_client::ClientError::WebSocket(error)) => {
            assert!(
                error.to_string().contains("401"),
                "{door} {token:?}: {error}"
            );
        }
        Err(signalgate_client::ClientError::Status(status)) => {
            assert_eq!(
                status.code(),
                tonic::Code::Unauthenticated,
                "{door} {token:?}: {status}"
            );
        }
        Ok(mut client) => {
            // Socket.IO answers the handshake with a connect_error.
            assert_eq!(door, Door::SocketIo, "{door} {token:?} was let in");
            let received = tokio::time::timeout(EVENT_TIMEOUT, client.recv())
                .await
                .expect("in time")
                .expect("recv");
            match received {
                Incoming::Closed(Closed::SocketIo(how)) => {
                    assert!(how.contains("UNAUTHENTICATED"), "{how}");
                }
                other => panic!("{door} {token:?}: got {other:?}"),
            }
        }
        Err(other) => panic!("{door} {token:?}: {other}"),
    }
}

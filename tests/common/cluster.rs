//! Multi-node fixtures: a real `redis-server` on a free port, and several
//! gateways sharing it.

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use signalgate::core::Census;
use signalgate_client::Door;

use super::redis_cluster::keys_on;
use super::{Connect, EVENT_TIMEOUT, TestClient, TestGateway, test_config};

/// A `redis-server` process owned by a test (killed when dropped).
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

fn redis_binary() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned())
}

impl RedisServer {
    /// Starts a fresh, empty, non-persistent Redis on a free loopback port.
    pub async fn start() -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let child = Command::new(redis_binary())
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (scripts/test installs it; or set REDIS_SERVER)");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            if self.ping().await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server on port {} never answered",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(Ok(mut connection)) = tokio::time::timeout(
            Duration::from_millis(500),
            client.get_multiplexed_async_connection(),
        )
        .await
        else {
            return false;
        };
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .is_ok()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// `kill -9` of the Redis process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts Redis again on the same port, empty.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// A command connection for assertions.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to redis")
    }

    /// Keys matching `pattern`.
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let mut connection = self.connection().await;
        redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut connection)
            .await
            .expect("KEYS")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How long a test node's heartbeat lives (the node-death bound is this
/// plus a third of it).
pub const TEST_NODE_TTL: Duration = Duration::from_millis(900);

/// Several gateways over one Redis.
pub struct TestCluster {
    pub redis: RedisServer,
    pub nodes: Vec<TestGateway>,
}

impl TestCluster {
    pub async fn start(nodes: usize) -> TestCluster {
        TestCluster::start_with(nodes, test_config()).await
    }

    pub async fn start_with(count: usize, config: signalgate::Config) -> TestCluster {
        let redis = RedisServer::start().await;
        let mut nodes = Vec::new();
        for _ in 0..count {
            nodes.push(TestCluster::node(&redis, config.clone()).await);
        }
        TestCluster { redis, nodes }
    }

    /// One more gateway joining `redis`.
    pub async fn node(redis: &RedisServer, config: signalgate::Config) -> TestGateway {
        TestGateway::start_with(signalgate::Config {
            redis_url: Some(redis.url()),
            node_ttl: TEST_NODE_TTL,
            ..config
        })
        .await
    }

    pub fn census(&self) -> Census {
        census_of(&self.nodes)
    }

    /// Every node empty, and no pairing state left in Redis.
    pub async fn assert_empty(&self) {
        for node in &self.nodes {
            node.assert_empty().await;
        }
        let redis = &self.redis;
        assert_no_pairing_state(
            |pattern| async move { redis.keys(&pattern).await },
            "signalgate",
        )
        .await;
    }
}

/// Waits until no uid hash and no sessions set under `prefix` is left,
/// failing with what is; `keys` lists the keys matching a pattern.
pub async fn assert_no_pairing_state<F, Fut>(keys: F, prefix: &str)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let mut left = keys(format!("{prefix}:uid:*")).await;
        left.extend(keys(format!("{prefix}:node:*:sessions")).await);
        if left.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Redis still holds pairing state: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every node's census, added up.
pub fn census_of(nodes: &[TestGateway]) -> Census {
    let mut total = Census::default();
    for node in nodes {
        let census = node.census();
        total.open_sessions += census.open_sessions;
        total.away_sessions += census.away_sessions;
        total.registry.uids += census.registry.uids;
        total.registry.bound_sessions += census.registry.bound_sessions;
        total.registry.pairs += census.registry.pairs;
    }
    total
}

/// Where a scenario runs: one gateway, or two nodes over Redis with web
/// and app sessions on different nodes (over one Redis, or over the Redis
/// Cluster whose node URLs it names).
#[derive(Clone, Copy, Debug)]
pub enum Topology {
    Single,
    TwoNodes,
    RedisCluster(&'static [String]),
}

/// A running [`Topology`].
pub enum Deployment {
    Single(TestGateway),
    /// Web clients take the nodes in turn starting with the first, app
    /// clients starting with the second: the first pair is split across
    /// nodes, a replacement lands on the other node.
    Cluster {
        cluster: TestCluster,
        webs: std::sync::atomic::AtomicUsize,
        apps: std::sync::atomic::AtomicUsize,
    },
    /// Two nodes over a Redis Cluster, under a key prefix of their own
    /// (scenarios share one Redis Cluster); clients alternate as above.
    RedisCluster {
        nodes: Vec<TestGateway>,
        urls: &'static [String],
        prefix: String,
        webs: std::sync::atomic::AtomicUsize,
        apps: std::sync::atomic::AtomicUsize,
    },
}

/// Distinguishes the key prefixes of deployments sharing a Redis Cluster.
static NEXT_PREFIX: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Topology {
    pub async fn start(self) -> Deployment {
        self.start_with(test_config()).await
    }

    pub async fn start_with(self, config: signalgate::Config) -> Deployment {
        match self {
            Topology::Single => Deployment::Single(TestGateway::start_with(config).await),
            Topology::TwoNodes => Deployment::Cluster {
                cluster: TestCluster::start_with(2, config).await,
                webs: 0.into(),
                apps: 1.into(),
            },
            Topology::RedisCluster(urls) => {
                let prefix = format!(
                    "sg{}",
                    NEXT_PREFIX.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                );
                let mut nodes = Vec::new();
                for _ in 0..2 {
                    let node = TestGateway::start_with(signalgate::Config {
                        redis_cluster_nodes: urls.to_vec(),
                        redis_prefix: prefix.clone(),
                        node_ttl: TEST_NODE_TTL,
                        ..config.clone()
                    })
                    .await;
                    nodes.push(node);
                }
                Deployment::RedisCluster {
                    nodes,
                    urls,
                    prefix,
                    webs: 0.into(),
                    apps: 1.into(),
                }
            }
        }
    }
}

impl Deployment {
    /// Connects a client that will act as the web side.
    pub async fn web(&self, door: Door) -> TestClient {
        self.connect_as("web", door).await
    }

    /// Connects a client that will act as the app side.
    pub async fn app(&self, door: Door) -> TestClient {
        self.connect_as("app", door).await
    }

    /// Every node's address (one for a single gateway).
    pub fn addresses(&self) -> Vec<std::net::SocketAddr> {
        match self {
            Deployment::Single(gateway) => vec![gateway.address],
            Deployment::Cluster { cluster, .. } => {
                cluster.nodes.iter().map(|node| node.address).collect()
            }
            Deployment::RedisCluster { nodes, .. } => {
                nodes.iter().map(|node| node.address).collect()
            }
        }
    }

    pub fn census(&self) -> Census {
        match self {
            Deployment::Single(gateway) => gateway.census(),
            Deployment::Cluster { cluster, .. } => cluster.census(),
            Deployment::RedisCluster { nodes, .. } => census_of(nodes),
        }
    }

    pub async fn assert_empty(&self) {
        match self {
            Deployment::Single(gateway) => gateway.assert_empty().await,
            Deployment::Cluster { cluster, .. } => cluster.assert_empty().await,
            Deployment::RedisCluster {
                nodes,
                urls,
                prefix,
                ..
            } => {
                for node in nodes {
                    node.assert_empty().await;
                }
                assert_no_pairing_state(
                    |pattern| async move { keys_on(urls, &pattern).await },
                    prefix,
                )
                .await;
            }
        }
    }
}

impl Connect for Deployment {
    async fn connect_as(&self, role: &str, door: Door) -> TestClient {
        match self {
            Deployment::Single(gateway) => gateway.connect(door).await,
            Deployment::Cluster {
                cluster,
                webs,
                apps,
            } => {
                alternate(&cluster.nodes, role, webs, apps)
                    .connect(door)
                    .await
            }
            Deployment::RedisCluster {
                nodes, webs, apps, ..
            } => alternate(nodes, role, webs, apps).connect(door).await,
        }
    }
}

/// The node a client of `role` goes to: each role takes the nodes in turn.
fn alternate<'a>(
    nodes: &'a [TestGateway],
    role: &str,
    webs: &std::sync::atomic::AtomicUsize,
    apps: &std::sync::atomic::AtomicUsize,
) -> &'a TestGateway {
    let turn = if role == "web" { webs } else { apps };
    &nodes[turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % nodes.len()]
}

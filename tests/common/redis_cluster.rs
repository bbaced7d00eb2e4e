//! A real Redis Cluster for tests: six `redis-server --cluster-enabled yes`
//! processes on free loopback ports (three primaries, one replica each),
//! joined with `redis-cli --cluster create`, killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::cluster::free_port;

/// How long a primary may be silent before its replica takes over.
const NODE_TIMEOUT_MS: u64 = 1000;

/// One `redis-server` of the cluster.
struct ClusterMember {
    port: u16,
    child: Option<Child>,
}

/// A running Redis Cluster.
pub struct RedisCluster {
    members: Vec<ClusterMember>,
    directory: std::path::PathBuf,
    node_timeout_ms: u64,
}

fn redis_binary(name: &str, variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| name.to_owned())
}

impl RedisCluster {
    /// Starts six nodes and creates the cluster; waits until every slot is
    /// served.
    pub async fn start() -> RedisCluster {
        RedisCluster::start_with_node_timeout(NODE_TIMEOUT_MS).await
    }

    /// [`RedisCluster::start`] with `cluster-node-timeout` set.
    pub async fn start_with_node_timeout(node_timeout_ms: u64) -> RedisCluster {
        let directory = std::env::temp_dir().join(format!(
            "signalgate-redis-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&directory).expect("cluster directory");
        let mut cluster = RedisCluster {
            members: Vec::new(),
            directory,
            node_timeout_ms,
        };
        for _ in 0..6 {
            let member = cluster.spawn_answering().await;
            cluster.members.push(member);
        }
        let mut create = Command::new(redis_binary("redis-cli", "REDIS_CLI"));
        create.arg("--cluster").arg("create");
        for member in &cluster.members {
            create.arg(format!("127.0.0.1:{}", member.port));
        }
        let output = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli runs (scripts/test installs redis-tools; or set REDIS_CLI)");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let ports: Vec<u16> = cluster.members.iter().map(|member| member.port).collect();
        wait_for(
            || every_node(&ports, cluster_ok),
            "every node sees cluster_state:ok",
        )
        .await;
        wait_for(
            || every_node(&ports, replica_in_sync_or_primary),
            "every replica has synced with its primary",
        )
        .await;
        cluster
    }

    /// A node on a free port, answering. A port picked free can be taken
    /// before the node binds it (tests run side by side): a node that
    /// exits is started again on another port.
    async fn spawn_answering(&self) -> ClusterMember {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let port = free_cluster_port();
            let mut child = self.spawn(port);
            loop {
                // This node's own answer, not another test's on the port.
                let info = text_answer(port, &["INFO", "server"]).await;
                if info.contains(&format!("process_id:{}\r", child.id())) {
                    return ClusterMember {
                        port,
                        child: Some(child),
                    };
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "timed out: a cluster node answers"
                );
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    fn spawn(&self, port: u16) -> Child {
        let config = self.directory.join(format!("nodes-{port}.conf"));
        Command::new(redis_binary("redis-server", "REDIS_SERVER"))
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes", "--cluster-config-file"])
            .arg(&config)
            .args(["--cluster-node-timeout", &self.node_timeout_ms.to_string()])
            // Replicas sync at once, and may take over however long they
            // were cut off.
            .args(["--repl-diskless-sync-delay", "0"])
            .args(["--cluster-replica-validity-factor", "0"])
            // The healthy shards keep serving while one fails over (the
            // default refuses every command, CLUSTERDOWN, from the failure's
            // detection to the promotion): docs/CLUSTER.md recommends it.
            .args(["--cluster-require-full-coverage", "no"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.directory)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (scripts/test installs it; or set REDIS_SERVER)")
    }

    /// The URLs a gateway is given (`--redis-cluster-node`).
    pub fn urls(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|member| member.child.is_some())
            .map(|member| format!("redis://127.0.0.1:{}/", member.port))
            .collect()
    }

    /// Keys matching `pattern` on every primary still running.
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        keys_on(&self.urls(), pattern).await
    }

    /// The port of the primary serving `key`'s hash slot (asked of the
    /// first node still running).
    pub async fn primary_of(&self, key: &str) -> u16 {
        let port = self
            .members
            .iter()
            .find(|member| member.child.is_some())
            .expect("a running member")
            .port;
        let mut connection = connect(port).await.expect("a cluster node");
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut connection)
            .await
            .expect("CLUSTER KEYSLOT");
        let shards: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut connection)
            .await
            .expect("CLUSTER SLOTS");
        for shard in shards {
            let redis::Value::Array(fields) = shard else {
                continue;
            };
            let number = |value: &redis::Value| match value {
                redis::Value::Int(n) => *n,
                _ => -1,
            };
            let (first, last) = (number(&fields[0]), number(&fields[1]));
            if (first..=last).contains(&i64::from(slot))
                && let redis::Value::Array(primary) = &fields[2]
            {
                return number(&primary[1]) as u16;
            }
        }
        panic!("no primary serves slot {slot}");
    }

    /// The ports of the primaries serving slots now.
    pub async fn primary_ports(&self) -> Vec<u16> {
        let mut ports = primaries(self.members[0].port).await;
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// `kill -9` of the node on `port`; waits until its replica has taken
    /// over and every slot is served again.
    pub async fn kill_and_fail_over(&mut self, port: u16) {
        let member = self
            .members
            .iter_mut()
            .find(|member| member.port == port)
            .expect("a member on that port");
        if let Some(mut child) = member.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.wait_for_takeover_from(port).await;
    }

    /// `SIGSTOP`s the node on `port` (it keeps its connections open and
    /// answers nothing: a primary that hangs); waits until its replica has
    /// taken over and every slot is served again. [`Self::wake`] resumes it.
    pub async fn hang_and_fail_over(&mut self, port: u16) {
        self.signal(port, "-STOP");
        self.wait_for_takeover_from(port).await;
    }

    /// `SIGCONT`s the node on `port`.
    pub fn wake(&mut self, port: u16) {
        self.signal(port, "-CONT");
    }

    /// Starts the node killed on `port` again, with its cluster file: it
    /// rejoins as a replica of the primary that took over. Waits until it
    /// has synced.
    pub async fn restart(&mut self, port: u16) {
        let child = self.spawn(port);
        let member = self
            .members
            .iter_mut()
            .find(|member| member.port == port)
            .expect("a member on that port");
        assert!(member.child.is_none(), "restart only a killed node");
        member.child = Some(child);
        let rejoined = |port| async move {
            let info = text_answer(port, &["INFO", "replication"]).await;
            info.contains("role:slave") && info.contains("master_link_status:up")
        };
        wait_for(|| rejoined(port), "the restarted node is a replica in sync").await;
    }

    /// How many clients on the node on `port` subscribe to the sharded
    /// channel `channel` (`PUBSUB SHARDNUMSUB`; 0 if it does not answer).
    pub async fn shard_subscribers(&self, port: u16, channel: &str) -> i64 {
        let Some(mut connection) = connect(port).await else {
            return 0;
        };
        let answer: Vec<redis::Value> = redis::cmd("PUBSUB")
            .arg("SHARDNUMSUB")
            .arg(channel)
            .query_async(&mut connection)
            .await
            .unwrap_or_default();
        match answer.get(1) {
            Some(redis::Value::Int(count)) => *count,
            _ => 0,
        }
    }

    fn signal(&self, port: u16, signal: &str) {
        let member = self
            .members
            .iter()
            .find(|member| member.port == port)
            .expect("a member on that port");
        let pid = member.child.as_ref().expect("a running member").id();
        let status = std::process::Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Waits until the other nodes see every slot served and the node on
    /// `port` serving none.
    async fn wait_for_takeover_from(&self, port: u16) {
        let ports: Vec<u16> = self
            .members
            .iter()
            .filter(|member| member.child.is_some() && member.port != port)
            .map(|member| member.port)
            .collect();
        let taken_over =
            |live| async move { cluster_ok(live).await && !primaries(live).await.contains(&port) };
        wait_for(
            || every_node(&ports, taken_over),
            "the replica takes over (the failed node serves no slot, cluster_state:ok)",
        )
        .await;
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

async fn connect(port: u16) -> Option<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    tokio::time::timeout(
        Duration::from_millis(500),
        client.get_multiplexed_async_connection(),
    )
    .await
    .ok()?
    .ok()
}

/// What the node on `port` answers to a command whose answer is text
/// (empty if it does not answer).
async fn text_answer(port: u16, command: &[&str]) -> String {
    let Some(mut connection) = connect(port).await else {
        return String::new();
    };
    redis::cmd(command[0])
        .arg(&command[1..])
        .query_async(&mut connection)
        .await
        .unwrap_or_default()
}

async fn cluster_ok(port: u16) -> bool {
    let info = text_answer(port, &["CLUSTER", "INFO"]).await;
    info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
}

/// Whether `check` holds for the node on every port.
async fn every_node<F, Fut>(ports: &[u16], check: F) -> bool
where
    F: Fn(u16) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for port in ports {
        if !check(*port).await {
            return false;
        }
    }
    true
}

/// Whether the node on `port` is a primary, or a replica whose link to
/// its primary is up.
async fn replica_in_sync_or_primary(port: u16) -> bool {
    let info = text_answer(port, &["INFO", "replication"]).await;
    info.contains("role:master") || info.contains("master_link_status:up")
}

/// The ports of the primaries `port` sees serving slots.
async fn primaries(port: u16) -> Vec<u16> {
    let Some(mut connection) = connect(port).await else {
        return Vec::new();
    };
    let shards: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut connection)
        .await
        .unwrap_or_default();
    shards
        .iter()
        .filter_map(|shard| match shard {
            redis::Value::Array(fields) => match fields.get(2) {
                Some(redis::Value::Array(primary)) => match primary.get(1) {
                    Some(redis::Value::Int(port)) => Some(*port as u16),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Keys matching `pattern` on every primary among `urls` that answers.
pub async fn keys_on(urls: &[String], pattern: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for url in urls {
        let Some(port) = url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
        else {
            continue;
        };
        let Some(mut connection) = connect(port).await else {
            continue;
        };
        let role: Vec<redis::Value> = redis::cmd("ROLE")
            .query_async(&mut connection)
            .await
            .unwrap_or_default();
        if !matches!(role.first(), Some(redis::Value::BulkString(kind)) if kind == b"master") {
            continue;
        }
        let found: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut connection)
            .await
            .unwrap_or_default();
        keys.extend(found);
    }
    keys.sort();
    keys
}

/// A free loopback port for a cluster node: Redis also listens on the port
/// 10,000 above it (the cluster bus), so that one must be free too, and
/// the node refuses any port above 55535 (the ephemeral range here reaches
/// 60999, so about one port in five from the kernel would not start).
fn free_cluster_port() -> u16 {
    const HIGHEST: u16 = 65535 - 10000;
    loop {
        let port = free_port();
        if port <= HIGHEST && std::net::TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

/// Polls `ready` every 50 ms for up to 20 s.
async fn wait_for<F, Fut>(ready: F, what: &str)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !ready().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

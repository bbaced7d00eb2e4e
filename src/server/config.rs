//! Command line and environment configuration, parsed once into [`Config`].
//!
//! Every flag also reads an environment variable (`SIGNALGATE_...`); the
//! flag wins when both are given. Defaults are named constants.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// The seed server's port, kept so that existing clients find us.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:3186";
/// Largest accepted message on every door, in bytes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Events a session may have queued before it counts as a slow consumer.
pub const DEFAULT_OUTBOX_CAPACITY: usize = 256;
/// Bytes (estimated) a session may have queued before it counts as a slow
/// consumer: 16 messages of the largest size.
pub const DEFAULT_OUTBOX_MAX_BYTES: usize = 1024 * 1024;
/// Initial WebSocket read buffer per connection. Signaling messages are
/// small; 1 KiB keeps an idle connection under 8 KiB of RSS, and larger
/// messages just take more reads.
pub const DEFAULT_WS_READ_BUFFER_BYTES: usize = 1024;
/// WebSocket bytes buffered before a write reaches the socket.
pub const DEFAULT_WS_WRITE_BUFFER_BYTES: usize = 8 * 1024;
/// How long shutdown waits for sessions to close.
pub const DEFAULT_SHUTDOWN_GRACE: &str = "10s";
/// How long an abruptly disconnected session is held for a resume.
pub const DEFAULT_RESUME_WINDOW: &str = "30s";
/// Most events a session retains for a resume.
pub const DEFAULT_RESUME_BUFFER_EVENTS: usize = 256;
/// Most bytes a session retains for a resume.
pub const DEFAULT_RESUME_BUFFER_BYTES: usize = 256 * 1024;
/// Sustained requests per second per session.
pub const DEFAULT_RATE_LIMIT: f64 = 100.0;
/// Requests a session may burst above the sustained rate.
pub const DEFAULT_RATE_BURST: f64 = 200.0;
/// Socket.IO handshakes per second per client IP (a burst of twice as many).
pub const DEFAULT_SOCKETIO_HANDSHAKE_RATE: f64 = 50.0;
/// Open connections in all.
pub const DEFAULT_MAX_CONNECTIONS: usize = 250_000;
/// Open connections from one IP address (generous: carriers NAT many phones
/// behind one address).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 10_000;
/// Longest uid accepted, in bytes.
pub const DEFAULT_MAX_UID_BYTES: usize = 128;
/// How long a connection may stay without registering or resuming.
pub const DEFAULT_REGISTER_TIMEOUT: &str = "30s";
/// Default for `--call-join-window`.
pub const DEFAULT_CALL_JOIN_WINDOW: &str = "60s";
/// How long a client may take to send HTTP/1 request headers (slowloris),
/// to begin its first request on a new connection, and to send a Socket.IO
/// polling POST's body.
pub const DEFAULT_HEADER_READ_TIMEOUT: &str = "10s";
/// How long a connection may stay open with no request or stream on it.
pub const DEFAULT_IDLE_TIMEOUT: &str = "60s";
/// Concurrent HTTP/2 streams (gRPC sessions) per connection.
pub const DEFAULT_HTTP2_MAX_STREAMS: u32 = 128;
/// Heartbeat interval: WebSocket pings, Engine.IO pings, HTTP/2 keepalive.
pub const DEFAULT_PING_INTERVAL: &str = "25s";
/// How long a heartbeat may go unanswered before the link counts as dead.
pub const DEFAULT_PING_TIMEOUT: &str = "20s";
/// Default `--redis-prefix`.
pub const DEFAULT_REDIS_PREFIX: &str = "signalgate";
/// Default `--node-ttl`.
pub const DEFAULT_NODE_TTL: &str = "6s";
/// Default `--redis-timeout`.
pub const DEFAULT_REDIS_TIMEOUT: &str = "1s";
/// Default `--cluster-reply-timeout`.
pub const DEFAULT_CLUSTER_REPLY_TIMEOUT: &str = "2s";
/// Default `--turn-ttl`.
pub const DEFAULT_TURN_TTL: &str = "24h";
/// Default `--jwt-jwks-refresh`.
pub const DEFAULT_JWKS_REFRESH: &str = "10m";
/// Default `--webhook-timeout`.
pub const DEFAULT_WEBHOOK_TIMEOUT: &str = "5s";
/// Default `--webhook-max-attempts`.
pub const DEFAULT_WEBHOOK_MAX_ATTEMPTS: u32 = 8;
/// Default `--webhook-queue`.
pub const DEFAULT_WEBHOOK_QUEUE: usize = 10_000;

/// A default duration constant as a [`Duration`]: the same text clap
/// parses, so the two defaults cannot drift apart (the constants are
/// checked by `defaults_match_the_flags`).
fn default_duration(text: &str) -> Duration {
    parse_duration(text).unwrap_or(Duration::ZERO)
}

/// Parses `250ms`, `30s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 500ms, 2m or 1h"))?;
    let seconds = |per_unit: u64| {
        number
            .checked_mul(per_unit)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{text:?} is too long a duration"))
    };
    match unit {
        "" | "s" => seconds(1),
        "ms" => Ok(Duration::from_millis(number)),
        "m" => seconds(60),
        "h" => seconds(3600),
        _ => Err(format!("{text:?} has an unknown unit (use ms, s, m or h)")),
    }
}

/// `signalgate [OPTIONS] [COMMAND]`.
#[derive(Debug, Parser)]
#[command(name = "signalgate", version, about)]
pub struct Cli {
    /// What to run; the gateway when omitted.
    #[command(subcommand)]
    pub command: Option<CliCommand>,
    /// Gateway settings.
    #[command(flatten)]
    pub config: Config,
}

/// Subcommands besides serving.
#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Run the gateway (the default).
    Serve,
    /// Mint an HS256 token for development, signed with the JWT secret.
    Token {
        /// The uid the token allows (its `sub`).
        #[arg(long)]
        uid: String,
        /// Restrict the token to one role (`web` or `app`).
        #[arg(long)]
        role: Option<crate::core::Role>,
        /// How long the token is valid (e.g. `1h`).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
        /// The shared secret (the gateway's `--jwt-secret`).
        #[arg(long, env = "SIGNALGATE_JWT_SECRET", hide_env_values = true)]
        jwt_secret: String,
    },
}

pub use crate::telemetry::LogFormat;

/// Everything the gateway needs to start.
#[derive(Clone, Debug, PartialEq, Args)]
pub struct Config {
    /// Address to listen on (gRPC, WebSocket and HTTP share it).
    #[arg(long, env = "SIGNALGATE_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// IPv4 address(es) to answer `ipaddr` with, instead of the machine's
    /// non-loopback interface addresses. Repeat or separate with commas.
    #[arg(long, env = "SIGNALGATE_ADVERTISE_IP", value_delimiter = ',')]
    pub advertise_ip: Vec<Ipv4Addr>,

    /// Largest accepted message on every door, in bytes.
    #[arg(long, env = "SIGNALGATE_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// Events a session may have queued before it is closed as a slow consumer.
    #[arg(long, env = "SIGNALGATE_OUTBOX_CAPACITY", default_value_t = DEFAULT_OUTBOX_CAPACITY)]
    pub outbox_capacity: usize,

    /// Bytes (estimated) a session may have queued before it is closed as a
    /// slow consumer (one event always fits).
    #[arg(long, env = "SIGNALGATE_OUTBOX_MAX_BYTES", default_value_t = DEFAULT_OUTBOX_MAX_BYTES)]
    pub outbox_max_bytes: usize,

    /// Initial WebSocket read buffer per connection, in bytes.
    #[arg(long, env = "SIGNALGATE_WS_READ_BUFFER_BYTES", default_value_t = DEFAULT_WS_READ_BUFFER_BYTES)]
    pub ws_read_buffer_bytes: usize,

    /// WebSocket bytes buffered before a write reaches the socket.
    #[arg(long, env = "SIGNALGATE_WS_WRITE_BUFFER_BYTES", default_value_t = DEFAULT_WS_WRITE_BUFFER_BYTES)]
    pub ws_write_buffer_bytes: usize,

    /// How long shutdown waits for sessions to close (e.g. `10s`).
    #[arg(long, env = "SIGNALGATE_SHUTDOWN_GRACE", default_value = DEFAULT_SHUTDOWN_GRACE, value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// How long a session whose connection dropped abruptly is held for a
    /// resume (`0` disables resumption).
    #[arg(long, env = "SIGNALGATE_RESUME_WINDOW", default_value = DEFAULT_RESUME_WINDOW, value_parser = parse_duration)]
    pub resume_window: Duration,

    /// Most events a session retains for a resume.
    #[arg(long, env = "SIGNALGATE_RESUME_BUFFER_EVENTS", default_value_t = DEFAULT_RESUME_BUFFER_EVENTS)]
    pub resume_buffer_events: usize,

    /// Most bytes a session retains for a resume.
    #[arg(long, env = "SIGNALGATE_RESUME_BUFFER_BYTES", default_value_t = DEFAULT_RESUME_BUFFER_BYTES)]
    pub resume_buffer_bytes: usize,

    /// HS256 secret: connections must present a JWT signed with it.
    #[arg(long, env = "SIGNALGATE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM public key (RSA or EC P-256): connections must present an RS256 or
    /// ES256 JWT it verifies.
    #[arg(long, env = "SIGNALGATE_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<String>,

    /// PEM certificate chain: serve TLS (gRPC over h2 and wss) on the port.
    #[arg(long, env = "SIGNALGATE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<String>,

    /// PEM private key for `--tls-cert`.
    #[arg(long, env = "SIGNALGATE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<String>,

    /// Sustained requests per second per session (0: unlimited).
    #[arg(long, env = "SIGNALGATE_RATE_LIMIT", default_value_t = DEFAULT_RATE_LIMIT)]
    pub rate_limit: f64,

    /// Requests a session may send at once above the sustained rate.
    #[arg(long, env = "SIGNALGATE_RATE_BURST", default_value_t = DEFAULT_RATE_BURST)]
    pub rate_burst: f64,

    /// Socket.IO handshakes per second per client IP, with a burst of
    /// twice as many (0: unlimited).
    #[arg(long, env = "SIGNALGATE_SOCKETIO_HANDSHAKE_RATE", default_value_t = DEFAULT_SOCKETIO_HANDSHAKE_RATE)]
    pub socketio_handshake_rate: f64,

    /// Open connections in all; more are refused at accept.
    #[arg(long, env = "SIGNALGATE_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Open connections from one IP address.
    #[arg(long, env = "SIGNALGATE_MAX_CONNECTIONS_PER_IP", default_value_t = DEFAULT_MAX_CONNECTIONS_PER_IP)]
    pub max_connections_per_ip: usize,

    /// Longest uid accepted at register, in bytes.
    #[arg(long, env = "SIGNALGATE_MAX_UID_BYTES", default_value_t = DEFAULT_MAX_UID_BYTES)]
    pub max_uid_bytes: usize,

    /// How long a connection may stay without registering or resuming (0: forever).
    #[arg(long, env = "SIGNALGATE_REGISTER_TIMEOUT", default_value = DEFAULT_REGISTER_TIMEOUT, value_parser = parse_duration)]
    pub register_timeout: Duration,

    /// How long one side's `callreport` waits for the other side's before
    /// the call is recorded from one side alone (docs/PROTOCOL.md, *Call
    /// outcomes*).
    #[arg(long, env = "SIGNALGATE_CALL_JOIN_WINDOW", default_value = DEFAULT_CALL_JOIN_WINDOW, value_parser = parse_duration)]
    pub call_join_window: Duration,

    /// How long a client may take to send HTTP/1 request headers, to begin
    /// its first request (or HTTP/2 stream) on a new connection, and to send
    /// a Socket.IO polling POST's body.
    #[arg(long, env = "SIGNALGATE_HEADER_READ_TIMEOUT", default_value = DEFAULT_HEADER_READ_TIMEOUT, value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// How long a connection may stay open with no request or stream on it
    /// (0: forever). Upgraded WebSockets have their heartbeat instead.
    #[arg(long, env = "SIGNALGATE_IDLE_TIMEOUT", default_value = DEFAULT_IDLE_TIMEOUT, value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Concurrent HTTP/2 streams (gRPC sessions) per connection.
    #[arg(long, env = "SIGNALGATE_HTTP2_MAX_STREAMS", default_value_t = DEFAULT_HTTP2_MAX_STREAMS)]
    pub http2_max_streams: u32,

    /// Heartbeat interval (WebSocket ping, Engine.IO ping, HTTP/2 keepalive).
    #[arg(long, env = "SIGNALGATE_PING_INTERVAL", default_value = DEFAULT_PING_INTERVAL, value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// How long a heartbeat may go unanswered before the link is dropped.
    #[arg(long, env = "SIGNALGATE_PING_TIMEOUT", default_value = DEFAULT_PING_TIMEOUT, value_parser = parse_duration)]
    pub ping_timeout: Duration,

    /// Origin allowed to use the browser doors (`/ws`, `/socket.io/`);
    /// repeat for several, `*` is a wildcard (`http://localhost:*`). Default:
    /// every origin. Requests without an Origin header (native apps) are
    /// always allowed.
    #[arg(
        long = "allowed-origin",
        env = "SIGNALGATE_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Redis URL (`redis://host:port/db`, `rediss://` for TLS): share the
    /// pairing registry with other nodes over Redis (docs/CLUSTER.md).
    /// Default: the embedded in-memory registry (one node).
    #[arg(long, env = "SIGNALGATE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// A node of a Redis Cluster (`redis://host:port`), instead of
    /// `--redis-url`: the same registry over a Redis Cluster, found
    /// through any of these nodes; repeat, or separate with commas
    /// (docs/CLUSTER.md, "Redis Cluster").
    #[arg(
        long = "redis-cluster-node",
        env = "SIGNALGATE_REDIS_CLUSTER_NODES",
        value_delimiter = ',',
        conflicts_with = "redis_url",
        hide_env_values = true
    )]
    pub redis_cluster_nodes: Vec<String>,

    /// Prefix of every Redis key and channel, so several clusters can share
    /// one Redis.
    #[arg(long, env = "SIGNALGATE_REDIS_PREFIX", default_value = DEFAULT_REDIS_PREFIX)]
    pub redis_prefix: String,

    /// How long a node's heartbeat in Redis lives. A node silent for this
    /// long is declared dead: its sessions are freed and their peers told
    /// `byebye` (within node TTL + TTL/3).
    #[arg(long, env = "SIGNALGATE_NODE_TTL", default_value = DEFAULT_NODE_TTL, value_parser = parse_duration)]
    pub node_ttl: Duration,

    /// How long one Redis command may take before it fails and its request
    /// is answered `UNAVAILABLE` (a failure on one Redis also marks the
    /// registry unavailable until the heartbeat succeeds). Raise it when
    /// Redis is far away or starved (a loaded single host, a 100,000-session
    /// setup), not to hide an outage.
    #[arg(long, env = "SIGNALGATE_REDIS_TIMEOUT", default_value = DEFAULT_REDIS_TIMEOUT, value_parser = parse_duration)]
    pub redis_timeout: Duration,

    /// How long a cross-node request (a relay's delivery, a hand-over, an
    /// admin query) waits for the other node's reply before it is answered
    /// `UNAVAILABLE`.
    #[arg(long, env = "SIGNALGATE_CLUSTER_REPLY_TIMEOUT", default_value = DEFAULT_CLUSTER_REPLY_TIMEOUT, value_parser = parse_duration)]
    pub cluster_reply_timeout: Duration,

    /// ICE server URL handed to every session (`stun:`, `stuns:`, `turn:`,
    /// `turns:`, e.g. `turn:turn.example.com:3478?transport=udp`); repeat
    /// or separate with commas. Default: none (no ICE fields are sent).
    #[arg(
        long = "ice-server",
        env = "SIGNALGATE_ICE_SERVERS",
        value_delimiter = ','
    )]
    pub ice_servers: Vec<String>,

    /// Shared secret of the TURN server's REST API (coturn's
    /// `static-auth-secret`): TURN URLs get credentials minted per session.
    /// Without it they are handed out bare.
    #[arg(long, env = "SIGNALGATE_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,

    /// Lifetime of minted TURN credentials.
    #[arg(long, env = "SIGNALGATE_TURN_TTL", default_value = DEFAULT_TURN_TTL, value_parser = parse_duration)]
    pub turn_ttl: Duration,

    /// Checks tokens against the keys of this JWKS (an identity
    /// provider's `jwks_uri`): RS256, ES256 and EdDSA keys, by `kid`.
    #[arg(long, env = "SIGNALGATE_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,

    /// How often the JWKS is fetched again (and at once, at most every
    /// 30 s, when a token names an unknown `kid`).
    #[arg(long, env = "SIGNALGATE_JWT_JWKS_REFRESH", default_value = DEFAULT_JWKS_REFRESH, value_parser = parse_duration)]
    pub jwt_jwks_refresh: Duration,

    /// Tokens must carry this `iss` (any key mode).
    #[arg(long, env = "SIGNALGATE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Tokens must carry this `aud` (any key mode).
    #[arg(long, env = "SIGNALGATE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Turns on the admin API (HTTP `/admin/v1/...`, gRPC
    /// `signalgate.admin.v1.Admin`) and the dashboard at `/admin/`: every
    /// call must carry `Authorization: Bearer TOKEN`. Without it they are
    /// off (404 / UNIMPLEMENTED).
    #[arg(long, env = "SIGNALGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Serve the admin API (HTTP and gRPC) and the dashboard on this
    /// address only, instead of on `--listen` (keep them off the public
    /// port: e.g. `127.0.0.1:3187`). Needs `--admin-token`.
    #[arg(long, env = "SIGNALGATE_ADMIN_LISTEN", requires = "admin_token")]
    pub admin_listen: Option<SocketAddr>,

    /// Where to POST session and pair events (docs/HOOKS.md); needs
    /// `--webhook-secret`.
    #[arg(long, env = "SIGNALGATE_WEBHOOK_URL")]
    pub webhook_url: Option<String>,

    /// The secret webhook bodies are signed with (HMAC-SHA256,
    /// `Signalgate-Signature`).
    #[arg(long, env = "SIGNALGATE_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,

    /// How long one webhook attempt may take.
    #[arg(long, env = "SIGNALGATE_WEBHOOK_TIMEOUT", default_value = DEFAULT_WEBHOOK_TIMEOUT, value_parser = parse_duration)]
    pub webhook_timeout: Duration,

    /// Attempts per webhook event before it is dropped (and counted).
    #[arg(long, env = "SIGNALGATE_WEBHOOK_MAX_ATTEMPTS", default_value_t = DEFAULT_WEBHOOK_MAX_ATTEMPTS)]
    pub webhook_max_attempts: u32,

    /// Webhook events held at most, waiting or being retried; past it new
    /// events are dropped and counted.
    #[arg(long, env = "SIGNALGATE_WEBHOOK_QUEUE", default_value_t = DEFAULT_WEBHOOK_QUEUE)]
    pub webhook_queue: usize,

    /// Log format (`RUST_LOG` sets the level, default `info`).
    #[arg(long, env = "SIGNALGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Default for Config {
    /// The defaults, as if no flag and no variable were given.
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 3186))),
            advertise_ip: Vec::new(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            outbox_capacity: DEFAULT_OUTBOX_CAPACITY,
            outbox_max_bytes: DEFAULT_OUTBOX_MAX_BYTES,
            ws_read_buffer_bytes: DEFAULT_WS_READ_BUFFER_BYTES,
            ws_write_buffer_bytes: DEFAULT_WS_WRITE_BUFFER_BYTES,
            shutdown_grace: default_duration(DEFAULT_SHUTDOWN_GRACE),
            resume_window: default_duration(DEFAULT_RESUME_WINDOW),
            resume_buffer_events: DEFAULT_RESUME_BUFFER_EVENTS,
            resume_buffer_bytes: DEFAULT_RESUME_BUFFER_BYTES,
            allowed_origins: Vec::new(),
            jwt_secret: None,
            jwt_public_key: None,
            tls_cert: None,
            tls_key: None,
            rate_limit: DEFAULT_RATE_LIMIT,
            rate_burst: DEFAULT_RATE_BURST,
            socketio_handshake_rate: DEFAULT_SOCKETIO_HANDSHAKE_RATE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_uid_bytes: DEFAULT_MAX_UID_BYTES,
            register_timeout: default_duration(DEFAULT_REGISTER_TIMEOUT),
            call_join_window: default_duration(DEFAULT_CALL_JOIN_WINDOW),
            header_read_timeout: default_duration(DEFAULT_HEADER_READ_TIMEOUT),
            idle_timeout: default_duration(DEFAULT_IDLE_TIMEOUT),
            http2_max_streams: DEFAULT_HTTP2_MAX_STREAMS,
            ping_interval: default_duration(DEFAULT_PING_INTERVAL),
            ping_timeout: default_duration(DEFAULT_PING_TIMEOUT),
            redis_url: None,
            redis_cluster_nodes: Vec::new(),
            redis_prefix: DEFAULT_REDIS_PREFIX.to_owned(),
            node_ttl: default_duration(DEFAULT_NODE_TTL),
            redis_timeout: default_duration(DEFAULT_REDIS_TIMEOUT),
            cluster_reply_timeout: default_duration(DEFAULT_CLUSTER_REPLY_TIMEOUT),
            ice_servers: Vec::new(),
            turn_secret: None,
            turn_ttl: default_duration(DEFAULT_TURN_TTL),
            admin_token: None,
            admin_listen: None,
            jwt_jwks_url: None,
            jwt_jwks_refresh: default_duration(DEFAULT_JWKS_REFRESH),
            jwt_issuer: None,
            jwt_audience: None,
            webhook_url: None,
            webhook_secret: None,
            webhook_timeout: default_duration(DEFAULT_WEBHOOK_TIMEOUT),
            webhook_max_attempts: DEFAULT_WEBHOOK_MAX_ATTEMPTS,
            webhook_queue: DEFAULT_WEBHOOK_QUEUE,
            log_format: LogFormat::Text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("18446744073709551615h").is_err());
    }

    /// Every field: the flags' defaults (no flag, no variable) are
    /// `Config::default()`, and no default duration constant fails to
    /// parse.
    #[test]
    fn defaults_match_the_flags() {
        let parsed = Cli::try_parse_from(["signalgate"]).expect("parses");
        assert_eq!(parsed.config, Config::default());
        for text in [
            DEFAULT_SHUTDOWN_GRACE,
            DEFAULT_RESUME_WINDOW,
            DEFAULT_REGISTER_TIMEOUT,
            DEFAULT_HEADER_READ_TIMEOUT,
            DEFAULT_IDLE_TIMEOUT,
            DEFAULT_PING_INTERVAL,
            DEFAULT_PING_TIMEOUT,
            DEFAULT_NODE_TTL,
            DEFAULT_REDIS_TIMEOUT,
            DEFAULT_CLUSTER_REPLY_TIMEOUT,
            DEFAULT_TURN_TTL,
            DEFAULT_JWKS_REFRESH,
            DEFAULT_WEBHOOK_TIMEOUT,
        ] {
            assert!(
                parse_duration(text).is_ok_and(|d| d > Duration::ZERO),
                "{text}"
            );
        }
    }

    #[test]
    fn the_redis_deadlines_are_flags() {
        let parsed = Cli::try_parse_from([
            "signalgate",
            "--redis-timeout",
            "5s",
            "--cluster-reply-timeout",
            "7500ms",
        ])
        .expect("parses");
        assert_eq!(parsed.config.redis_timeout, Duration::from_secs(5));
        assert_eq!(
            parsed.config.cluster_reply_timeout,
            Duration::from_millis(7500)
        );
        assert_eq!(Config::default().redis_timeout, Duration::from_secs(1));
        assert_eq!(
            Config::default().cluster_reply_timeout,
            Duration::from_secs(2)
        );
    }

    #[test]
    fn the_token_subcommand_reads_a_role() {
        let parsed = Cli::try_parse_from([
            "signalgate",
            "token",
            "--uid",
            "u",
            "--role",
            "app",
            "--jwt-secret",
            "s",
        ])
        .expect("parses");
        assert!(matches!(
            parsed.command,
            Some(CliCommand::Token {
                role: Some(crate::core::Role::App),
                ..
            })
        ));
        assert!(
            Cli::try_parse_from([
                "signalgate",
                "token",
                "--uid",
                "u",
                "--role",
                "phone",
                "--jwt-secret",
                "s"
            ])
            .is_err()
        );
    }
}

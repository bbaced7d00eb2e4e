//! Several gateway nodes sharing one pairing registry over Redis
//! (`--redis-url`; the data model and guarantees are in docs/CLUSTER.md).
//!
//! [`RedisRegistry`] implements the core's [`Registry`]: Redis holds which
//! node and session own each (uid, role); Lua scripts make bind, unbind,
//! replacement and the reaping of dead nodes atomic. Events for a peer on
//! another node travel as frames on that node's pub/sub channel; a relay
//! waits for the receiving node's reply, so its sender learns about a slow
//! or vanished peer exactly as on one node. This node's own sessions are
//! mirrored in a [`local::LocalTable`], which serves pairs whose two
//! sessions are both here without a round trip (and through an outage).

mod bus;
mod local;
mod scripts;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::core::{
    Bound, DeliveryError, ErrorCode, Event, Identity, Peer, Registry, RegistryCensus,
    RegistryError, Rejection, RemoteSession, Role, RouteError, SessionExport, SessionExporter,
    SessionHandle, SessionId, Uid,
};
use crate::telemetry::metrics;
use bus::Frame;
use local::LocalTable;

/// How long one Redis command may take before the registry counts Redis as
/// unreachable.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a relay waits for the peer's node to say it queued the event.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between attempts to reach Redis again.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);
/// Frames held at most per handed-over session while its new node binds it.
const MAX_HELD_FRAMES: usize = 1024;
/// How long frames wait for a new node to confirm a handed-over session.
const HOLD_FOR_NEW_NODE: Duration = Duration::from_secs(5);
/// How long frames for a handed-over session are forwarded to its new node.
const FORWARD_FOR: Duration = Duration::from_secs(30);
/// How long a `kill` for a session not bound here yet is remembered.
const EARLY_KILL_MEMORY: Duration = Duration::from_secs(10);
/// Bindings of a dead node freed per script call (keeps Redis responsive).
const REAP_BATCH: usize = 500;

/// How to join the cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// `redis://host:port/db` (or `rediss://`).
    pub redis_url: String,
    /// Prefix of every key and channel.
    pub prefix: String,
    /// Lifetime of this node's heartbeat; it is renewed every third of it.
    pub node_ttl: Duration,
}

/// Failure to join the cluster at startup.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The URL is not a Redis URL.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// Redis did not answer.
    #[error("cannot reach Redis: {0}")]
    Unreachable(String),
}

/// Names of keys and channels.
#[derive(Debug)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn uid(&self, uid: &Uid) -> String {
        format!("{}:uid:{}", self.prefix, uid.as_str())
    }
    fn bindings(&self, node: &str) -> String {
        format!("{}:node:{node}:bindings", self.prefix)
    }
    fn alive(&self, node: &str) -> String {
        format!("{}:node:{node}:alive", self.prefix)
    }
    fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }
    fn channel(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }
}

/// `<role>:<uid>`, a member of a node's bindings set.
fn member(uid: &Uid, role: Role) -> String {
    format!("{}:{}", role.as_str(), uid.as_str())
}

fn parse_role(text: &str) -> Option<Role> {
    match text {
        "web" => Some(Role::Web),
        "app" => Some(Role::App),
        _ => None,
    }
}

/// A registry entry: `<node>/<session>`.
fn split_holder(value: &str) -> Option<(&str, SessionId)> {
    let (node, session) = value.split_once('/')?;
    Some((node, SessionId::parse(session)?))
}

struct Inner {
    node: String,
    keys: Keys,
    client: redis::Client,
    commands: ConnectionManager,
    local: LocalTable,
    node_ttl: Duration,
    /// Requests waiting for another node's `reply`, by token.
    pending: Mutex<HashMap<u64, oneshot::Sender<Frame>>>,
    /// What this node's resume tokens start with: `<node>.`.
    token_tag: String,
    /// The hub, to hand this node's sessions to others.
    exporter: std::sync::OnceLock<std::sync::Weak<dyn SessionExporter>>,
    next_token: AtomicU64,
    subscribed: AtomicBool,
    heartbeat_ok: AtomicBool,
    reassert: Notify,
    beat_now: Notify,
    stop: CancellationToken,
    /// Sessions that ended while Redis was unreachable: their entries are
    /// freed and their peers told `byebye` once Redis is back.
    pending_releases: Mutex<Vec<(Uid, Role, SessionId)>>,
    /// `kill` frames that arrived before their session's local binding (its
    /// Redis binding and the replacement raced ahead). Also the lock that
    /// orders a `kill` against a local bind.
    early_kills: Mutex<HashMap<SessionId, (ErrorCode, std::time::Instant)>>,
    /// Sessions this node handed to another for a resume: frames still
    /// addressed here are held until the new node has bound the session,
    /// then forwarded there.
    moved: Mutex<HashMap<SessionId, Moved>>,
}

/// Where a handed-over session went, and what waits for it.
enum Moved {
    /// The new node has not confirmed yet: frames wait here.
    Holding {
        to: String,
        frames: Vec<Frame>,
        since: std::time::Instant,
    },
    /// Bound on the new node: frames go there.
    Forwarding {
        to: String,
        since: std::time::Instant,
    },
}

/// The pairing registry shared by every node over Redis.
pub struct RedisRegistry {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRegistry")
            .field("node", &self.inner.node)
            .field("prefix", &self.inner.keys.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisRegistry {
    /// Connects to Redis, subscribes to this node's channel and starts the
    /// heartbeat. Fails if Redis cannot be reached now; later outages are
    /// survived (see docs/CLUSTER.md).
    pub async fn connect(config: ClusterConfig) -> Result<RedisRegistry, ClusterError> {
        let client = redis::Client::open(config.redis_url.as_str())
            .map_err(|e| ClusterError::InvalidUrl(e.to_string()))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(RECONNECT_BACKOFF);
        let commands = tokio::time::timeout(
            COMMAND_TIMEOUT * 3,
            ConnectionManager::new_with_config(client.clone(), manager_config),
        )
        .await
        .map_err(|_| ClusterError::Unreachable("timed out".into()))?
        .map_err(|e| ClusterError::Unreachable(e.to_string()))?;
        let node = format!("{:016x}", rand::random::<u64>());
        let inner = Arc::new(Inner {
            token_tag: format!("{node}."),
            exporter: std::sync::OnceLock::new(),
            node,
            keys: Keys {
                prefix: config.prefix,
            },
            client,
            commands,
            local: LocalTable::new(),
            node_ttl: config.node_ttl.max(Duration::from_millis(300)),
            pending: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            subscribed: AtomicBool::new(false),
            heartbeat_ok: AtomicBool::new(false),
            reassert: Notify::new(),
            beat_now: Notify::new(),
            stop: CancellationToken::new(),
            pending_releases: Mutex::new(Vec::new()),
            early_kills: Mutex::new(HashMap::new()),
            moved: Mutex::new(HashMap::new()),
        });
        let pubsub = inner
            .subscribe()
            .await
            .map_err(|e| ClusterError::Unreachable(e.to_string()))?;
        inner
            .beat()
            .await
            .map_err(|e| ClusterError::Unreachable(e.to_string()))?;
        inner.heartbeat_ok.store(true, Ordering::Release);
        tokio::spawn(Arc::clone(&inner).listen(Some(pubsub)));
        tokio::spawn(Arc::clone(&inner).heartbeat());
        tokio::spawn(Arc::clone(&inner).reasserter());
        info!(node = %inner.node, prefix = %inner.keys.prefix, ttl_ms = inner.node_ttl.as_millis() as u64, "joined the cluster over Redis");
        Ok(RedisRegistry { inner })
    }

    /// This node's id in Redis.
    pub fn node_id(&self) -> &str {
        &self.inner.node
    }
}

impl Inner {
    fn available(&self) -> bool {
        self.subscribed.load(Ordering::Acquire) && self.heartbeat_ok.load(Ordering::Acquire)
    }

    fn unavailable(&self) -> RegistryError {
        RegistryError::Unavailable("Redis is unreachable".into())
    }

    /// Runs one Redis operation with a deadline; a failure marks Redis
    /// unreachable until the heartbeat succeeds again.
    async fn call<T>(
        &self,
        operation: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RegistryError> {
        let failure = match tokio::time::timeout(COMMAND_TIMEOUT, operation).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => error.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        if self.heartbeat_ok.swap(false, Ordering::AcqRel) {
            warn!(node = %self.node, error = %failure, "Redis unreachable: cross-node relays and registrations fail until it returns");
        }
        self.beat_now.notify_one();
        Err(RegistryError::Unavailable(failure))
    }

    fn connection(&self) -> ConnectionManager {
        self.commands.clone()
    }

    /// A peer from a registry entry, or `None` if it names nobody reachable.
    fn peer_from(self: &Arc<Self>, holder: &str, uid: &Uid, role: Role) -> Option<Peer> {
        self.peer_seen(holder, uid, role, false)
    }

    /// [`Inner::peer_from`], with whether Redis showed the peer away.
    fn peer_seen(
        self: &Arc<Self>,
        holder: &str,
        uid: &Uid,
        role: Role,
        away: bool,
    ) -> Option<Peer> {
        let (node, session) = split_holder(holder)?;
        if node == self.node {
            if let Some(local) = self.local.get(uid, role, Some(session)) {
                return Some(Peer::local(local));
            }
            // Handed over for a resume and not yet bound on its new node:
            // frames go through this node's channel, which holds and then
            // forwards them.
            if !lock(&self.moved).contains_key(&session) {
                return None;
            }
        }
        Some(Peer::remote(Arc::new(RemotePeer {
            inner: Arc::clone(self),
            node: node.to_owned(),
            session,
            uid: uid.clone(),
            role,
            away,
            cached_for: None,
        })))
    }

    async fn publish(&self, node: &str, frame: &Frame) -> Result<i64, RegistryError> {
        metrics::cluster_frame(&frame.t, "out");
        let payload =
            serde_json::to_string(frame).map_err(|e| RegistryError::Unavailable(e.to_string()))?;
        let mut connection = self.connection();
        self.call(
            redis::cmd("PUBLISH")
                .arg(self.keys.channel(node))
                .arg(payload)
                .query_async::<i64>(&mut connection),
        )
        .await
    }

    /// Sends an event to a session on another node. A relay waits for the
    /// node's reply; other events only for Redis to take them.
    async fn send_event(
        &self,
        node: &str,
        uid: &Uid,
        role: Role,
        session: SessionId,
        event: Event,
    ) -> Result<(), DeliveryError> {
        if !self.available() {
            return Err(DeliveryError::Unreachable);
        }
        let (name, data) = bus::encode_event(&event).map_err(|error| {
            warn!(%error, "event not sent to a remote peer");
            DeliveryError::Unreachable
        })?;
        let wants_reply = matches!(event, Event::Relayed(_));
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let reply = wants_reply.then(|| {
            let (sender, receiver) = oneshot::channel();
            lock(&self.pending).insert(token, sender);
            receiver
        });
        let frame = Frame {
            t: "deliver".into(),
            uid: Some(uid.as_str().to_owned()),
            role: Some(role.as_str().to_owned()),
            session: Some(session.to_string()),
            event: Some(name),
            data,
            reply_node: wants_reply.then(|| self.node.clone()),
            token: wants_reply.then_some(token),
            ..Frame::default()
        };
        let forget = || {
            lock(&self.pending).remove(&token);
        };
        match self.publish(node, &frame).await {
            Ok(receivers) if receivers > 0 => {}
            Ok(_) => {
                // Nobody listens on the node's channel: it is dead (and
                // about to be reaped) or cut off from Redis.
                forget();
                return Err(DeliveryError::Unreachable);
            }
            Err(_) => {
                forget();
                return Err(DeliveryError::Unreachable);
            }
        }
        let Some(reply) = reply else {
            return Ok(());
        };
        match tokio::time::timeout(REPLY_TIMEOUT, reply).await {
            Ok(Ok(reply)) => bus::decode_outcome(reply.outcome.as_deref().unwrap_or("")),
            _ => {
                forget();
                Err(DeliveryError::Unreachable)
            }
        }
    }

    /// Asks Redis who holds the other role of `session`'s uid (checking
    /// that `session` still holds its own), and caches a remote answer.
    async fn lookup_peer(
        self: &Arc<Self>,
        uid: &Uid,
        role: Role,
        session: SessionId,
    ) -> Result<Peer, RouteError> {
        let inner = self;
        let mut connection = inner.connection();
        let (mine, peer, peer_away): (Option<String>, Option<String>, Option<String>) = inner
            .call(
                redis::cmd("HMGET")
                    .arg(inner.keys.uid(uid))
                    .arg(role.as_str())
                    .arg(role.peer().as_str())
                    .arg(format!("{}:away", role.peer().as_str()))
                    .query_async(&mut connection),
            )
            .await?;
        let me = format!("{}/{session}", inner.node);
        if mine.as_deref().is_some_and(|holder| holder != me) {
            return Err(RouteError::NotOwner);
        }
        let peer = peer.ok_or(RouteError::NoPeer)?;
        if let Some((node, peer_session)) = split_holder(&peer)
            && node != inner.node
        {
            inner
                .local
                .set_route(uid, role, session, Some((node.to_owned(), peer_session)));
        }
        inner
            .peer_seen(&peer, uid, role.peer(), peer_away.is_some())
            .ok_or(RouteError::NoPeer)
    }

    /// SUBSCRIBE to this node's channel on a dedicated connection.
    async fn subscribe(&self) -> redis::RedisResult<redis::aio::PubSub> {
        let mut pubsub = tokio::time::timeout(COMMAND_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| {
                redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
            })??;
        pubsub.subscribe(self.keys.channel(&self.node)).await?;
        self.subscribed.store(true, Ordering::Release);
        Ok(pubsub)
    }

    /// Receives frames for this node; resubscribes after Redis comes back
    /// and then re-asserts this node's bindings.
    async fn listen(self: Arc<Self>, mut first: Option<redis::aio::PubSub>) {
        loop {
            let pubsub = match first.take() {
                Some(pubsub) => pubsub,
                None => match self.subscribe().await {
                    Ok(pubsub) => {
                        info!(node = %self.node, "resubscribed to Redis");
                        self.beat_now.notify_one();
                        self.reassert.notify_one();
                        pubsub
                    }
                    Err(error) => {
                        debug!(%error, "Redis subscription failed; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(RECONNECT_BACKOFF) => continue,
                            () = self.stop.cancelled() => return,
                        }
                    }
                },
            };
            let mut frames = pubsub.into_on_message();
            loop {
                tokio::select! {
                    message = frames.next() => match message {
                        Some(message) => self.receive(message.get_payload_bytes()),
                        None => break,
                    },
                    () = self.stop.cancelled() => return,
                }
            }
            self.subscribed.store(false, Ordering::Release);
            self.heartbeat_ok.store(false, Ordering::Release);
            warn!(node = %self.node, "lost the Redis subscription: cross-node relays fail until it returns");
        }
    }

    /// Handles one frame from another node.
    fn receive(self: &Arc<Self>, payload: &[u8]) {
        let frame: Frame = match serde_json::from_slice(payload) {
            Ok(frame) => frame,
            Err(error) => {
                warn!(%error, "malformed frame on the node channel");
                return;
            }
        };
        metrics::cluster_frame(&frame.t, "in");
        match frame.t.as_str() {
            "reply" => {
                let Some(token) = frame.token else {
                    return;
                };
                if let Some(waiter) = lock(&self.pending).remove(&token) {
                    let _ = waiter.send(frame);
                }
            }
            "take" => self.hand_over(frame),
            "deliver" => {
                if let Some(frame) = self.divert_if_moved(frame) {
                    let outcome = self.deliver_here(&frame);
                    self.answer(&frame, outcome);
                }
            }
            "adopted" => self.adopted(&frame),
            "kill" => {
                let Some(frame) = self.divert_if_moved(frame) else {
                    return;
                };
                let Some((uid, role, session)) = target(&frame) else {
                    return;
                };
                let code = frame
                    .code
                    .as_deref()
                    .and_then(ErrorCode::parse)
                    .unwrap_or(ErrorCode::Replaced);
                let handle = {
                    let mut early = lock(&self.early_kills);
                    let handle = self.local.get(&uid, role, Some(session));
                    match &handle {
                        Some(_) => {
                            self.local.unbind(&uid, role, session);
                        }
                        None => {
                            // Its bind has not finished here yet: the bind
                            // will find this and give the slot up.
                            let now = std::time::Instant::now();
                            early.retain(|_, (_, at)| now.duration_since(*at) < EARLY_KILL_MEMORY);
                            early.insert(session, (code, now));
                        }
                    }
                    handle
                };
                if let Some(handle) = handle {
                    handle.kill(code);
                }
            }
            other => warn!(kind = other, "unknown frame on the node channel"),
        }
    }

    /// Answers another node's `take`: the hub validates the resume and lets
    /// go of the session, which leaves this node's table (its Redis entry
    /// is moved by the taking node).
    fn hand_over(self: &Arc<Self>, frame: Frame) {
        let (Some(node), Some(token)) = (frame.reply_node.clone(), frame.token) else {
            return;
        };
        let identity = frame.subject.clone().map(|subject| Identity {
            subject,
            role: frame.role_limit.as_deref().and_then(parse_role),
        });
        let exporter = self.exporter.get().and_then(std::sync::Weak::upgrade);
        let exported = match exporter {
            Some(exporter) => exporter.export(
                frame.resume_token.as_deref().unwrap_or(""),
                frame.last_seq.unwrap_or(0),
                identity.as_ref(),
            ),
            None => Err(Rejection::new(
                ErrorCode::Unavailable,
                "the node is stopping",
            )),
        };
        let reply = match exported.and_then(|export| {
            lock(&self.moved).insert(
                export.session_id,
                Moved::Holding {
                    to: node.clone(),
                    frames: Vec::new(),
                    since: std::time::Instant::now(),
                },
            );
            self.local
                .unbind(&export.uid, export.role, export.session_id);
            bus::encode_export(&export)
                .map_err(|e| Rejection::new(ErrorCode::Internal, e.to_string()))
        }) {
            Ok(wire) => Frame {
                t: "reply".into(),
                token: Some(token),
                outcome: Some("exported".into()),
                export: Some(wire),
                ..Frame::default()
            },
            Err(rejection) => Frame {
                t: "reply".into(),
                token: Some(token),
                outcome: Some("refused".into()),
                code: Some(rejection.code.as_str().to_owned()),
                message: Some(rejection.message.into_owned()),
                ..Frame::default()
            },
        };
        let inner = Arc::clone(self);
        tokio::spawn(async move {
            let _ = inner.publish(&node, &reply).await;
        });
    }

    /// Sends the outcome of a `deliver` to its sender, if it asked.
    fn answer(self: &Arc<Self>, frame: &Frame, outcome: Result<(), DeliveryError>) {
        if let (Some(node), Some(token)) = (frame.reply_node.clone(), frame.token) {
            let reply = Frame {
                t: "reply".into(),
                token: Some(token),
                outcome: Some(bus::encode_outcome(outcome).to_owned()),
                ..Frame::default()
            };
            let inner = Arc::clone(self);
            tokio::spawn(async move {
                let _ = inner.publish(&node, &reply).await;
            });
        }
    }

    /// A frame for a session this node handed over is held or forwarded
    /// (`None`); any other is returned to be handled here.
    fn divert_if_moved(self: &Arc<Self>, frame: Frame) -> Option<Frame> {
        let session = frame.session.as_deref().and_then(SessionId::parse)?;
        let mut moved = lock(&self.moved);
        match moved.get_mut(&session) {
            None => Some(frame),
            Some(Moved::Holding { frames, .. }) if frames.len() < MAX_HELD_FRAMES => {
                frames.push(frame);
                None
            }
            Some(Moved::Holding { .. }) => {
                drop(moved);
                self.answer(&frame, Err(DeliveryError::SlowConsumer));
                None
            }
            Some(Moved::Forwarding { to, .. }) => {
                let (to, inner) = (to.clone(), Arc::clone(self));
                tokio::spawn(async move {
                    let _ = inner.publish(&to, &frame).await;
                });
                None
            }
        }
    }

    /// The new node bound (or failed to bind) a session this node handed
    /// over: forward what was held, or refuse it.
    fn adopted(self: &Arc<Self>, frame: &Frame) {
        let Some(session) = frame.session.as_deref().and_then(SessionId::parse) else {
            return;
        };
        let bound = frame.outcome.as_deref() == Some("bound");
        let held = {
            let mut moved = lock(&self.moved);
            let Some(Moved::Holding { to, frames, .. }) = moved.remove(&session) else {
                return;
            };
            if bound {
                moved.insert(
                    session,
                    Moved::Forwarding {
                        to: to.clone(),
                        since: std::time::Instant::now(),
                    },
                );
            }
            (to, frames)
        };
        let (to, frames) = held;
        if bound {
            let inner = Arc::clone(self);
            tokio::spawn(async move {
                // In order, one after another.
                for frame in frames {
                    let _ = inner.publish(&to, &frame).await;
                }
            });
        } else {
            for frame in frames {
                self.answer(&frame, Err(DeliveryError::Gone));
            }
        }
    }

    /// Forgets handed-over sessions after a while; frames held for a new
    /// node that never confirmed are refused.
    fn expire_moved(self: &Arc<Self>) {
        let now = std::time::Instant::now();
        let mut refused = Vec::new();
        lock(&self.moved).retain(|_, moved| match moved {
            Moved::Holding { frames, since, .. } => {
                let keep = now.duration_since(*since) < HOLD_FOR_NEW_NODE;
                if !keep {
                    refused.append(frames);
                }
                keep
            }
            Moved::Forwarding { since, .. } => now.duration_since(*since) < FORWARD_FOR,
        });
        for frame in refused {
            self.answer(&frame, Err(DeliveryError::Unreachable));
        }
    }

    fn deliver_here(&self, frame: &Frame) -> Result<(), DeliveryError> {
        let (uid, role, session) = target(frame).ok_or(DeliveryError::Gone)?;
        let event = bus::decode_event(frame.event.as_deref().unwrap_or(""), frame.data.as_deref())
            .map_err(|error| {
                warn!(%error, "undeliverable frame");
                DeliveryError::Gone
            })?;
        let handle = self
            .local
            .get(&uid, role, Some(session))
            .ok_or(DeliveryError::Gone)?;
        handle.deliver(event)
    }

    /// `SET alive PX ttl GET` and membership in the nodes set. Returns
    /// whether the heartbeat key was still there.
    async fn beat(&self) -> Result<bool, RegistryError> {
        let mut connection = self.connection();
        let ttl_ms = self.node_ttl.as_millis() as u64;
        let (previous, _): (Option<String>, i64) = self
            .call(
                redis::pipe()
                    .cmd("SET")
                    .arg(self.keys.alive(&self.node))
                    .arg(1)
                    .arg("PX")
                    .arg(ttl_ms)
                    .arg("GET")
                    .cmd("SADD")
                    .arg(self.keys.nodes())
                    .arg(&self.node)
                    .query_async(&mut connection),
            )
            .await?;
        Ok(previous.is_some())
    }

    /// Renews the heartbeat every third of the TTL and reaps dead nodes.
    async fn heartbeat(self: Arc<Self>) {
        let interval = self.node_ttl / 3;
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = self.beat_now.notified() => {}
                () = self.stop.cancelled() => return,
            }
            let was_ok = self.heartbeat_ok.load(Ordering::Acquire);
            match self.beat().await {
                Ok(key_was_there) => {
                    if !was_ok || !key_was_there {
                        // Writes may have been lost while Redis was away, or
                        // Redis restarted empty: put this node's state back.
                        self.reassert.notify_one();
                    }
                    if self.subscribed.load(Ordering::Acquire)
                        && !self.heartbeat_ok.swap(true, Ordering::AcqRel)
                    {
                        info!(node = %self.node, "Redis reachable again");
                    }
                    self.expire_moved();
                    if let Err(error) = self.reap_dead_nodes().await {
                        debug!(%error, "reaping dead nodes failed");
                    }
                }
                Err(error) => debug!(%error, "heartbeat failed"),
            }
        }
    }

    /// Frees the bindings of every node whose heartbeat expired and tells
    /// their peers `byebye` (the script publishes it).
    async fn reap_dead_nodes(&self) -> Result<(), RegistryError> {
        let mut connection = self.connection();
        let nodes: Vec<String> = self
            .call(
                redis::cmd("SMEMBERS")
                    .arg(self.keys.nodes())
                    .query_async(&mut connection),
            )
            .await?;
        for node in nodes.iter().filter(|node| **node != self.node) {
            let alive: bool = self
                .call(
                    redis::cmd("EXISTS")
                        .arg(self.keys.alive(node))
                        .query_async(&mut connection),
                )
                .await?;
            if alive {
                continue;
            }
            let mut freed_all = false;
            while !freed_all {
                let left: i64 = self
                    .call(
                        scripts::REAP
                            .key(self.keys.bindings(node))
                            .key(self.keys.alive(node))
                            .key(self.keys.nodes())
                            .arg(node)
                            .arg(&self.keys.prefix)
                            .arg(REAP_BATCH)
                            .invoke_async(&mut connection),
                    )
                    .await?;
                freed_all = left <= 0;
            }
            info!(dead_node = %node, "reaped a node whose heartbeat expired");
        }
        Ok(())
    }

    /// Runs [`Inner::reassert_bindings`] whenever asked, until it succeeds.
    async fn reasserter(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = self.reassert.notified() => {}
                () = self.stop.cancelled() => return,
            }
            while let Err(error) = self.reassert_bindings().await {
                debug!(%error, "re-asserting bindings failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(RECONNECT_BACKOFF) => {}
                    () = self.stop.cancelled() => return,
                }
            }
            if lock(&self.pending_releases).is_empty() {
                continue;
            }
            // Give the other nodes a heartbeat to re-assert their own
            // bindings (Redis may have come back empty), so that the peers
            // of sessions that ended meanwhile can be found and told.
            tokio::select! {
                () = tokio::time::sleep(self.node_ttl / 2) => {}
                () = self.stop.cancelled() => return,
            }
            if let Err(error) = self.release_pending().await {
                debug!(%error, "releasing bindings of ended sessions failed");
                self.reassert.notify_one();
            }
        }
    }

    /// Frees the entries of sessions that ended while Redis was
    /// unreachable and tells their peers `byebye`.
    async fn release_pending(self: &Arc<Self>) -> Result<(), RegistryError> {
        let pending = std::mem::take(&mut *lock(&self.pending_releases));
        let mut connection = self.connection();
        for (index, (uid, role, session)) in pending.iter().enumerate() {
            let me = format!("{}/{session}", self.node);
            let outcome: Result<(i64, String), _> = self
                .call(
                    scripts::UNBIND
                        .key(self.keys.uid(uid))
                        .key(self.keys.bindings(&self.node))
                        .arg(role.as_str())
                        .arg(role.peer().as_str())
                        .arg(&me)
                        .arg(member(uid, *role))
                        .invoke_async(&mut connection),
                )
                .await;
            let peer = match outcome {
                // Freed, or not there at all (Redis came back empty): the
                // other role, if anyone holds it, has lost its peer.
                Ok((1 | 2, peer)) => peer,
                Ok(_) => continue,
                Err(error) => {
                    lock(&self.pending_releases).extend(pending[index..].iter().cloned());
                    return Err(error);
                }
            };
            // A peer on this node was told when the session ended.
            let remote = split_holder(&peer).is_some_and(|(node, _)| node != self.node);
            if remote && let Some(peer) = self.peer_from(&peer, uid, role.peer()) {
                let _ = peer.deliver(Event::ByeBye).await;
            }
        }
        info!(node = %self.node, released = pending.len(), "freed the bindings of sessions that ended while Redis was unreachable");
        Ok(())
    }

    /// Makes Redis agree with this node again: every local binding is
    /// re-asserted (or, if another session took it meanwhile, closed as
    /// `REPLACED`), and every entry of this node's set that no local
    /// session holds any more is freed, its peer told `byebye`.
    async fn reassert_bindings(self: &Arc<Self>) -> Result<(), RegistryError> {
        let mut connection = self.connection();
        let held = self.local.snapshot();
        let mut replaced = 0usize;
        for (uid, role, handle, epoch) in &held {
            let me = format!("{}/{}", self.node, handle.id());
            let (status, other): (i64, String) = self
                .call(
                    scripts::REBIND
                        .key(self.keys.uid(uid))
                        .key(self.keys.bindings(&self.node))
                        .arg(role.as_str())
                        .arg(role.peer().as_str())
                        .arg(&me)
                        .arg(member(uid, *role))
                        .arg(*epoch)
                        .invoke_async(&mut connection),
                )
                .await?;
            if status == 0 {
                debug!(%uid, %role, holder = %other, "lost a binding while Redis was unreachable");
                self.local.unbind(uid, *role, handle.id());
                handle.kill(ErrorCode::Replaced);
                replaced += 1;
            }
        }
        let members: Vec<String> = self
            .call(
                redis::cmd("SMEMBERS")
                    .arg(self.keys.bindings(&self.node))
                    .query_async(&mut connection),
            )
            .await?;
        let mut released = 0usize;
        for entry in members {
            let Some((role, uid)) = entry
                .split_once(':')
                .and_then(|(role, uid)| Some((parse_role(role)?, Uid::new(uid).ok()?)))
            else {
                continue;
            };
            if self.local.contains(&uid, role) {
                continue;
            }
            let peer: String = self
                .call(
                    scripts::RELEASE_STALE
                        .key(self.keys.uid(&uid))
                        .key(self.keys.bindings(&self.node))
                        .arg(role.as_str())
                        .arg(role.peer().as_str())
                        .arg(&self.node)
                        .arg(&entry)
                        .invoke_async(&mut connection),
                )
                .await?;
            released += 1;
            if let Some(peer) = self.peer_from(&peer, &uid, role.peer()) {
                let _ = peer.deliver(Event::ByeBye).await;
            }
        }
        info!(node = %self.node, held = held.len(), replaced, released, "re-asserted this node's bindings in Redis");
        Ok(())
    }
}

/// (uid, role, session) a `deliver` or `kill` frame is for.
fn target(frame: &Frame) -> Option<(Uid, Role, SessionId)> {
    let uid = Uid::new(frame.uid.as_deref()?).ok()?;
    let role = parse_role(frame.role.as_deref()?)?;
    let session = SessionId::parse(frame.session.as_deref()?)?;
    Some((uid, role, session))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A session on another node.
struct RemotePeer {
    inner: Arc<Inner>,
    node: String,
    session: SessionId,
    uid: Uid,
    role: Role,
    away: bool,
    /// Set when this peer came from the route cache of that session (the
    /// sender): a delivery that finds the peer gone looks again in Redis.
    cached_for: Option<SessionId>,
}

impl fmt::Debug for RemotePeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemotePeer")
            .field("node", &self.node)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl RemoteSession for RemotePeer {
    fn id(&self) -> SessionId {
        self.session
    }

    fn is_away(&self) -> bool {
        self.away
    }

    async fn deliver(&self, event: Event) -> Result<(), DeliveryError> {
        let Some(sender) = self.cached_for else {
            return self
                .inner
                .send_event(&self.node, &self.uid, self.role, self.session, event)
                .await;
        };
        let outcome = self
            .inner
            .send_event(
                &self.node,
                &self.uid,
                self.role,
                self.session,
                event.clone(),
            )
            .await;
        if !matches!(
            outcome,
            Err(DeliveryError::Gone | DeliveryError::Unreachable)
        ) {
            return outcome;
        }
        // The cached route may be stale (the peer was replaced, left, moved
        // or its node died): forget it and ask Redis once.
        let sender_role = self.role.peer();
        self.inner
            .local
            .set_route(&self.uid, sender_role, sender, None);
        match self.inner.lookup_peer(&self.uid, sender_role, sender).await {
            Ok(peer) => peer.deliver(event).await,
            Err(RouteError::Registry(_)) => Err(DeliveryError::Unreachable),
            Err(RouteError::NoPeer | RouteError::NotOwner) => Err(DeliveryError::Gone),
        }
    }
}

#[async_trait]
impl Registry for RedisRegistry {
    async fn bind(
        &self,
        uid: &Uid,
        role: Role,
        session: &Arc<SessionHandle>,
    ) -> Result<Bound, RegistryError> {
        let inner = &self.inner;
        if !inner.available() {
            return Err(inner.unavailable());
        }
        let me = format!("{}/{}", inner.node, session.id());
        let mut connection = inner.connection();
        let (previous, peer, epoch, peer_away, previous_away): (String, String, u64, u8, u8) =
            inner
                .call(
                    scripts::BIND
                        .key(inner.keys.uid(uid))
                        .key(inner.keys.bindings(&inner.node))
                        .arg(role.as_str())
                        .arg(role.peer().as_str())
                        .arg(&me)
                        .arg(&inner.node)
                        .arg(&inner.keys.prefix)
                        .arg(uid.as_str())
                        .invoke_async(&mut connection),
                )
                .await?;
        let (mut local, killed_early) = {
            let mut early = lock(&inner.early_kills);
            let local = inner.local.bind(uid, role, session, epoch);
            (local, early.remove(&session.id()).is_some())
        };
        if killed_early {
            // A newer registration elsewhere already replaced this one.
            inner.local.unbind(uid, role, session.id());
            local.replaced = Some(Arc::clone(session));
        }
        let peer = match split_holder(&peer) {
            Some((node, _)) if node == inner.node => local.peer.map(Peer::local),
            Some(_) => inner.peer_seen(&peer, uid, role.peer(), peer_away == 1),
            None => None,
        };
        let replaced_remote = split_holder(&previous).is_some_and(|(node, _)| node != inner.node);
        Ok(Bound {
            peer,
            replaced: local.replaced,
            replaced_remote_away: replaced_remote && previous_away == 1,
        })
    }

    async fn unbind(
        &self,
        uid: &Uid,
        role: Role,
        session: SessionId,
    ) -> Result<Option<Peer>, RegistryError> {
        let inner = &self.inner;
        let local_peer = inner.local.unbind(uid, role, session);
        if !inner.available() {
            // Redis is told when it is back (and a remote peer then hears
            // `byebye`); a peer here hears it now.
            lock(&inner.pending_releases).push((uid.clone(), role, session));
            return Ok(local_peer.flatten().map(Peer::local));
        }
        let me = format!("{}/{session}", inner.node);
        let mut connection = inner.connection();
        let outcome: Result<(i64, String), _> = inner
            .call(
                scripts::UNBIND
                    .key(inner.keys.uid(uid))
                    .key(inner.keys.bindings(&inner.node))
                    .arg(role.as_str())
                    .arg(role.peer().as_str())
                    .arg(&me)
                    .arg(member(uid, role))
                    .invoke_async(&mut connection),
            )
            .await;
        Ok(match outcome {
            // Freed: tell whoever holds the other role, wherever it is.
            Ok((1, peer)) => inner.peer_from(&peer, uid, role.peer()),
            // Replaced by a newer session: nobody to tell.
            Ok((0, _)) => None,
            // Redis lost the entry (restarted empty); trust this node.
            Ok((_, peer)) => match local_peer.flatten() {
                Some(local) => Some(Peer::local(local)),
                None => inner.peer_from(&peer, uid, role.peer()),
            },
            Err(_) => {
                lock(&inner.pending_releases).push((uid.clone(), role, session));
                local_peer.flatten().map(Peer::local)
            }
        })
    }

    async fn peer_of(&self, uid: &Uid, role: Role, session: SessionId) -> Result<Peer, RouteError> {
        let inner = &self.inner;
        match inner.local.local_peer(uid, role, session) {
            Err(()) => return Err(RouteError::NotOwner),
            Ok(Some(peer)) => return Ok(Peer::local(peer)),
            Ok(None) => {}
        }
        if !inner.available() {
            return Err(RouteError::Registry(inner.unavailable()));
        }
        if let Some((node, peer)) = inner.local.route(uid, role, session) {
            return Ok(Peer::remote(Arc::new(RemotePeer {
                inner: Arc::clone(inner),
                node,
                session: peer,
                uid: uid.clone(),
                role: role.peer(),
                away: false,
                cached_for: Some(session),
            })));
        }
        inner.lookup_peer(uid, role, session).await
    }

    fn census(&self) -> RegistryCensus {
        self.inner.local.census()
    }

    fn is_available(&self) -> bool {
        self.inner.available()
    }

    async fn set_away(&self, uid: &Uid, role: Role, session: SessionId, away: bool) {
        let inner = &self.inner;
        if !inner.available() {
            return;
        }
        let mut connection = inner.connection();
        let _ = inner
            .call(
                scripts::SET_AWAY
                    .key(inner.keys.uid(uid))
                    .arg(role.as_str())
                    .arg(format!("{}/{session}", inner.node))
                    .arg(u8::from(away))
                    .invoke_async::<i64>(&mut connection),
            )
            .await;
    }

    fn resume_token_tag(&self) -> Option<&str> {
        Some(&self.inner.token_tag)
    }

    fn set_exporter(&self, exporter: std::sync::Weak<dyn SessionExporter>) {
        let _ = self.inner.exporter.set(exporter);
    }

    async fn take_session(
        &self,
        token: &str,
        last_seq: u64,
        identity: Option<&Identity>,
    ) -> Result<Option<SessionExport>, Rejection> {
        let inner = &self.inner;
        let Some(node) = token
            .split_once('.')
            .map(|(node, _)| node)
            .filter(|node| node.len() == 16 && *node != inner.node)
        else {
            return Ok(None);
        };
        let unavailable = || {
            Rejection::new(
                ErrorCode::Unavailable,
                "the node holding the session cannot be reached; retry",
            )
        };
        if !inner.available() {
            return Err(unavailable());
        }
        let correlation = inner.next_token.fetch_add(1, Ordering::Relaxed);
        let (sender, reply) = oneshot::channel();
        lock(&inner.pending).insert(correlation, sender);
        let frame = Frame {
            t: "take".into(),
            resume_token: Some(token.to_owned()),
            last_seq: Some(last_seq),
            subject: identity.map(|identity| identity.subject.clone()),
            role_limit: identity
                .and_then(|identity| identity.role)
                .map(|role| role.as_str().to_owned()),
            reply_node: Some(inner.node.clone()),
            token: Some(correlation),
            ..Frame::default()
        };
        let forget = || {
            lock(&inner.pending).remove(&correlation);
        };
        match inner.publish(node, &frame).await {
            Ok(receivers) if receivers > 0 => {}
            Ok(_) => {
                forget();
                // Nobody holds that node's channel: the node is gone, and
                // its sessions with it.
                return Err(Rejection::new(
                    ErrorCode::ResumeFailed,
                    "the node that held the session is gone",
                ));
            }
            Err(_) => {
                forget();
                return Err(unavailable());
            }
        }
        let Ok(Ok(reply)) = tokio::time::timeout(REPLY_TIMEOUT, reply).await else {
            forget();
            return Err(unavailable());
        };
        match (reply.outcome.as_deref(), &reply.export) {
            (Some("exported"), Some(wire)) => bus::decode_export(wire)
                .map(Some)
                .map_err(|e| Rejection::new(ErrorCode::Internal, e.to_string())),
            _ => Err(Rejection::new(
                reply
                    .code
                    .as_deref()
                    .and_then(ErrorCode::parse)
                    .unwrap_or(ErrorCode::ResumeFailed),
                reply.message.unwrap_or_else(|| "resume refused".to_owned()),
            )),
        }
    }

    async fn adopt(
        &self,
        uid: &Uid,
        role: Role,
        token: &str,
        session: &Arc<SessionHandle>,
    ) -> Result<bool, RegistryError> {
        let inner = &self.inner;
        let Some((from, _)) = token.split_once('.') else {
            return Ok(false);
        };
        let mut connection = inner.connection();
        let (moved, epoch): (i64, u64) = inner
            .call(
                scripts::MIGRATE
                    .key(inner.keys.uid(uid))
                    .key(inner.keys.bindings(&inner.node))
                    .arg(role.as_str())
                    .arg(format!("{from}/{}", session.id()))
                    .arg(format!("{}/{}", inner.node, session.id()))
                    .arg(&inner.keys.prefix)
                    .arg(member(uid, role))
                    .arg(from)
                    .invoke_async(&mut connection),
            )
            .await?;
        let local = (moved != 0).then(|| inner.local.bind(uid, role, session, epoch));
        // The old node holds frames for the session until it hears this.
        let notice = Frame {
            t: "adopted".into(),
            session: Some(session.id().to_string()),
            outcome: Some(if moved != 0 { "bound" } else { "lost" }.to_owned()),
            ..Frame::default()
        };
        let _ = inner.publish(from, &notice).await;
        let Some(local) = local else {
            return Ok(false);
        };
        if let Some(replaced) = local.replaced {
            replaced.kill(ErrorCode::Replaced);
        }
        Ok(true)
    }

    async fn leave(&self) {
        let inner = &self.inner;
        inner.stop.cancel();
        // Whatever this node still holds is reaped by the others at once.
        let mut connection = inner.connection();
        let _ = inner
            .call(
                redis::cmd("DEL")
                    .arg(inner.keys.alive(&inner.node))
                    .query_async::<i64>(&mut connection),
            )
            .await;
        info!(node = %inner.node, "left the cluster");
    }
}

/// Bindings this node holds in Redis that it does not hold locally, and
/// the other way round (for tests and diagnostics).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Drift {
    /// In Redis only.
    pub redis_only: HashSet<String>,
    /// Here only.
    pub local_only: HashSet<String>,
}

impl RedisRegistry {
    /// Compares this node's bindings set in Redis with its local table.
    pub async fn drift(&self) -> Result<Drift, RegistryError> {
        let inner = &self.inner;
        let mut connection = inner.connection();
        let in_redis: HashSet<String> = inner
            .call(
                redis::cmd("SMEMBERS")
                    .arg(inner.keys.bindings(&inner.node))
                    .query_async(&mut connection),
            )
            .await?;
        let here: HashSet<String> = inner
            .local
            .snapshot()
            .into_iter()
            .map(|(uid, role, _, _)| member(&uid, role))
            .collect();
        Ok(Drift {
            redis_only: in_redis.difference(&here).cloned().collect(),
            local_only: here.difference(&in_redis).cloned().collect(),
        })
    }
}

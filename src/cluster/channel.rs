//! The node channel: frames from other nodes arrive here, and events for
//! sessions on other nodes leave through [`RemotePeer`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use redis::PushKind;
use redis::cluster_async::ClusterConnection;

use super::bus::{self, Answer, Asker, Frame, Target};
use super::connection::{ClusterListener, Listener, Pushes};
use super::{EARLY_KILL_MEMORY, Inner, RECONNECT_BACKOFF, lock};
use crate::core::admin::{NodeAnswers, NodeQuery};
use crate::core::{
    CallReport, DeliveryError, DoorKind, Event, RegistryError, RemoteSession, Role, RouteError,
    SessionId, Uid,
};
use crate::telemetry::metrics;

/// A subscription to this node's channel, as [`Inner::listen`] reads it.
pub(super) enum Subscription {
    /// The dedicated connection of one Redis.
    Single(redis::aio::PubSub),
    /// The Redis Cluster listener: messages arrive as pushes.
    Cluster,
}

impl Inner {
    /// Subscribes to this node's channel: `SUBSCRIBE` on a dedicated
    /// connection to one Redis; `SSUBSCRIBE` and `SUBSCRIBE` on a Redis
    /// Cluster (see [`Listener::Cluster`]).
    pub(super) async fn subscribe(&self) -> redis::RedisResult<Subscription> {
        let channel = self.keys.channel(&self.node);
        let subscribing = async {
            match &self.listener {
                Listener::Single(client) => {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    Ok::<_, redis::RedisError>(Subscription::Single(pubsub))
                }
                Listener::Cluster(listener) => {
                    subscribe_cluster(&mut listener.connection(), &channel).await?;
                    Ok(Subscription::Cluster)
                }
            }
        };
        let subscription = tokio::time::timeout(self.command_timeout, subscribing)
            .await
            .map_err(|_| {
                redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
            })??;
        self.subscribed.store(true, Ordering::Release);
        Ok(subscription)
    }

    /// Subscribes a Redis Cluster listener built afresh to this node's
    /// channel, then puts it in place of the current one: frames keep
    /// arriving on the old one until the new one hears them too (a frame
    /// heard on both is dropped the second time when it names an asker).
    pub(super) async fn resubscribe_rebuilt(
        &self,
        listener: &ClusterListener,
        mut connection: ClusterConnection,
    ) -> redis::RedisResult<()> {
        let channel = self.keys.channel(&self.node);
        tokio::time::timeout(
            self.command_timeout,
            subscribe_cluster(&mut connection, &channel),
        )
        .await
        .map_err(|_| {
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
        })??;
        listener.replace(connection);
        self.subscribed.store(true, Ordering::Release);
        Ok(())
    }

    /// Receives frames for this node; subscribes again after Redis comes
    /// back (or a Redis Cluster shard fails over) and then re-asserts this
    /// node's bindings. `pushes` carries a Redis Cluster's messages.
    pub(super) async fn listen(
        self: Arc<Self>,
        mut first: Option<Subscription>,
        mut pushes: Option<Pushes>,
    ) {
        loop {
            let subscription = match first.take() {
                Some(subscription) => subscription,
                None => match self.subscribe().await {
                    Ok(subscription) => {
                        info!(node = %self.node, "resubscribed to Redis");
                        self.beat_now.notify_one();
                        self.reassert.notify_one();
                        subscription
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
            let heard = match (subscription, pushes.as_mut()) {
                (Subscription::Single(pubsub), _) => self.hear(pubsub).await,
                (Subscription::Cluster, Some(pushes)) => self.hear_pushes(pushes).await,
                (Subscription::Cluster, None) => Heard::Stopped,
            };
            if heard == Heard::Stopped {
                return;
            }
            self.subscribed.store(false, Ordering::Release);
            self.heartbeat_ok.store(false, Ordering::Release);
            warn!(node = %self.node, "lost the Redis subscription: cross-node relays fail until it returns");
        }
    }

    /// Reads one Redis's subscription until it ends.
    async fn hear(self: &Arc<Self>, pubsub: redis::aio::PubSub) -> Heard {
        let mut frames = pubsub.into_on_message();
        loop {
            tokio::select! {
                message = frames.next() => match message {
                    Some(message) => self.receive(message.get_payload_bytes()),
                    None => return Heard::Lost,
                },
                () = self.stop.cancelled() => return Heard::Stopped,
            }
        }
    }

    /// Reads a Redis Cluster's pushes until one of its connections drops
    /// (the shard holding this node's channel may be failing over: the
    /// caller subscribes again, which succeeds once a primary serves it).
    async fn hear_pushes(self: &Arc<Self>, pushes: &mut Pushes) -> Heard {
        loop {
            tokio::select! {
                push = pushes.recv() => match push {
                    Some(push) => match push.kind {
                        PushKind::Message | PushKind::SMessage => {
                            if let Some(redis::Value::BulkString(payload)) = push.data.get(1) {
                                self.receive(payload);
                            }
                        }
                        // One of the cluster's connections dropped (any
                        // shard's: a primary failing over). Subscribing
                        // again at once keeps the node available when it
                        // was not the shard of this node's channel; when it
                        // was, that fails and the node is unavailable until
                        // the shard serves again.
                        PushKind::Disconnection => match self.subscribe().await {
                            Ok(_) => debug!(node = %self.node, "a Redis Cluster connection dropped; still subscribed"),
                            Err(_) => return Heard::Lost,
                        },
                        _ => {}
                    },
                    None => return Heard::Stopped,
                },
                () = self.stop.cancelled() => return Heard::Stopped,
            }
        }
    }

    /// Handles one frame from another node.
    pub(super) fn receive(self: &Arc<Self>, payload: &[u8]) {
        let frame = match Frame::decode(payload) {
            Ok(frame) => frame,
            Err(error) => {
                metrics::cluster_frame_malformed();
                warn!(%error, "malformed frame on the node channel");
                return;
            }
        };
        metrics::cluster_frame(frame.kind(), "in");
        if let Some(asker) = frame.asker()
            && !lock(&self.recent_frames).first_time(asker, std::time::Instant::now())
        {
            metrics::cluster_frame_duplicate();
            debug!(node = %asker.node, token = asker.token, "dropped a frame handled before");
            return;
        }
        match frame {
            Frame::Reply { token, answer } => {
                if let Some(waiter) = lock(&self.pending).remove(&token) {
                    let _ = waiter.send(answer);
                }
            }
            Frame::Take {
                resume_token,
                last_seq,
                identity,
                asker,
            } => self.hand_over(&resume_token, last_seq, identity.as_ref(), asker),
            Frame::Adopted { session, bound } => self.adopted(session, bound),
            // This node's own check of its subscription (the publisher
            // reads the subscriber count): heard twice, it is subscribed
            // twice (`echo`), and subscribes afresh.
            Frame::Probe { token } => {
                if lock(&self.probe_echoes).heard(token) {
                    metrics::cluster_subscription_doubled();
                    info!(node = %self.node, "this node hears its channel twice: subscribing afresh");
                    self.listener_stale.store(true, Ordering::Release);
                    self.rebuild_wanted.notify_one();
                }
            }
            Frame::Query { query, asker } => {
                // A node that is stopping answers nothing: the asker lists
                // it as unreachable.
                let Some(exporter) = self.exporter.get().and_then(std::sync::Weak::upgrade) else {
                    return;
                };
                let reply = Frame::Reply {
                    token: asker.token,
                    answer: Answer::Queried(exporter.answer(&query)),
                };
                let inner = Arc::clone(self);
                tokio::spawn(async move {
                    let _ = inner.publish(&asker.node, reply).await;
                });
            }
            Frame::Call { to, door, report } => {
                // Joined where the web session lives; a report for a web
                // session that has left since is joined here all the same.
                if let Some(exporter) = self.exporter.get().and_then(std::sync::Weak::upgrade) {
                    exporter.join_call(&to.uid, door, report);
                }
            }
            frame @ Frame::Deliver { .. } => {
                if let Some(frame) = self.divert_if_moved(frame) {
                    let outcome = self.deliver_here(&frame);
                    self.answer(&frame, outcome);
                }
            }
            frame @ Frame::Kill { .. } => {
                let Some(Frame::Kill {
                    to: Target { uid, role, session },
                    code,
                }) = self.divert_if_moved(frame)
                else {
                    return;
                };
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
        }
    }

    /// Sends the outcome of a `deliver` to its sender, if it asked.
    pub(super) fn answer(self: &Arc<Self>, frame: &Frame, outcome: Result<(), DeliveryError>) {
        if let Frame::Deliver {
            asker: Some(Asker { node, token }),
            ..
        } = frame
        {
            let reply = Frame::Reply {
                token: *token,
                answer: Answer::Delivered(outcome),
            };
            let (node, inner) = (node.clone(), Arc::clone(self));
            tokio::spawn(async move {
                let _ = inner.publish(&node, reply).await;
            });
        }
    }

    pub(super) fn deliver_here(&self, frame: &Frame) -> Result<(), DeliveryError> {
        let Frame::Deliver {
            to: Target { uid, role, session },
            event,
            data,
            ..
        } = frame
        else {
            return Err(DeliveryError::Gone);
        };
        let event = bus::decode_event(event, data.as_deref()).map_err(|error| {
            warn!(%error, "undeliverable frame");
            DeliveryError::Gone
        })?;
        // A session still binding here takes it too: it holds the event
        // until its `registered` is queued.
        let handle = self
            .local_or_binding(uid, *role, *session)
            .ok_or(DeliveryError::Gone)?;
        handle.deliver(event)
    }

    /// Sends an event to a session on another node. A relay waits for the
    /// node's reply; other events only for Redis to take them.
    pub(super) async fn send_event(
        &self,
        node: &str,
        uid: &Uid,
        role: Role,
        session: SessionId,
        event: Event,
    ) -> Result<(), DeliveryError> {
        self.try_send_event(node, uid, role, session, event)
            .await
            .map_err(|failed| failed.error)
    }

    /// [`Self::send_event`], telling a failure that certainly delivered
    /// nothing from one whose frame may still arrive.
    async fn try_send_event(
        &self,
        node: &str,
        uid: &Uid,
        role: Role,
        session: SessionId,
        event: Event,
    ) -> Result<(), SendFailed> {
        if !self.available() {
            return Err(SendFailed::nothing_sent(DeliveryError::Unreachable));
        }
        let (name, data) = bus::encode_event(&event).map_err(|error| {
            warn!(%error, "event not sent to a remote peer");
            SendFailed::nothing_sent(DeliveryError::Unreachable)
        })?;
        let deliver = |asker| Frame::Deliver {
            to: Target {
                uid: uid.clone(),
                role,
                session,
            },
            event: name,
            data,
            asker,
        };
        if !matches!(event, Event::Relayed(_)) {
            return match self.publish(node, deliver(None)).await {
                Ok(receivers) if receivers > 0 => Ok(()),
                // Nobody listens on the node's channel (it is dead, or cut
                // off from Redis).
                Ok(_) => Err(SendFailed::nothing_sent(DeliveryError::Unreachable)),
                // Redis failed: the command may still have run.
                Err(_) => Err(SendFailed::may_arrive(DeliveryError::Unreachable)),
            };
        }
        match self.ask(node, |asker| deliver(Some(asker))).await {
            Ok(Answer::Delivered(outcome)) => outcome.map_err(SendFailed::nothing_sent),
            Ok(_) | Err(Unanswered::NobodyListens) => {
                Err(SendFailed::nothing_sent(DeliveryError::Unreachable))
            }
            // No answer in time: the frame may have been (or still be)
            // delivered, by a late Redis command or a slow node.
            Err(Unanswered::NoAnswer) => Err(SendFailed::may_arrive(DeliveryError::Unreachable)),
        }
    }

    /// Sends the frame `make` builds to `node`, naming this node as the one
    /// to answer with a fresh correlation token, and waits for the answer
    /// (at most `--cluster-reply-timeout`). The waiter is registered before the
    /// frame leaves, so a quick answer is not missed, and removed if none
    /// comes.
    pub(super) async fn ask(
        &self,
        node: &str,
        make: impl FnOnce(Asker) -> Frame,
    ) -> Result<Answer, Unanswered> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (sender, answer) = oneshot::channel();
        lock(&self.pending).insert(token, sender);
        let frame = make(Asker {
            node: self.node.clone(),
            token,
        });
        let unanswered = match self.publish(node, frame).await {
            Ok(receivers) if receivers > 0 => {
                match tokio::time::timeout(self.reply_timeout, answer).await {
                    Ok(Ok(reply)) => return Ok(reply),
                    _ => Unanswered::NoAnswer,
                }
            }
            Ok(_) => Unanswered::NobodyListens,
            Err(_) => Unanswered::NoAnswer,
        };
        lock(&self.pending).remove(&token);
        Err(unanswered)
    }
}

impl Inner {
    /// Asks every other node in the nodes set `query`, all at once; a node
    /// that does not answer within the reply timeout is listed with `None`.
    pub(super) async fn ask_other_nodes(
        &self,
        query: &NodeQuery,
    ) -> Result<NodeAnswers, RegistryError> {
        if !self.available() {
            return Err(self.unavailable());
        }
        let mut connection = self.connection();
        let mut nodes: Vec<String> = self
            .call(
                redis::cmd("SMEMBERS")
                    .arg(self.keys.nodes())
                    .query_async(&mut connection),
            )
            .await?;
        nodes.retain(|node| *node != self.node);
        nodes.sort();
        let asks = nodes.into_iter().map(|node| async move {
            let answer = match self
                .ask(&node, |asker| Frame::Query {
                    query: query.clone(),
                    asker,
                })
                .await
            {
                Ok(Answer::Queried(answer)) => Some(answer),
                _ => None,
            };
            (Arc::from(node), answer)
        });
        Ok(futures_util::future::join_all(asks).await)
    }
}

/// Why a frame sent to another node for an answer got none.
pub(super) enum Unanswered {
    /// Nobody listens on the node's channel: the node is gone (and about
    /// to be reaped) or cut off from Redis.
    NobodyListens,
    /// Redis did not take the frame, or no answer came in time.
    NoAnswer,
}

/// A send to another node that failed.
struct SendFailed {
    error: DeliveryError,
    /// Whether the frame may still arrive (Redis failed or no answer came
    /// in time), so that another try could deliver it twice.
    may_arrive: bool,
}

impl SendFailed {
    fn nothing_sent(error: DeliveryError) -> SendFailed {
        SendFailed {
            error,
            may_arrive: false,
        }
    }

    fn may_arrive(error: DeliveryError) -> SendFailed {
        SendFailed {
            error,
            may_arrive: true,
        }
    }
}

/// A session on another node.
pub(super) struct RemotePeer {
    pub(super) inner: Arc<Inner>,
    pub(super) node: String,
    pub(super) session: SessionId,
    pub(super) uid: Uid,
    pub(super) role: Role,
    pub(super) away: bool,
    /// Set when this peer came from the route cache of that session (the
    /// sender): a delivery that finds the peer gone looks again in Redis.
    pub(super) cached_for: Option<SessionId>,
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

    async fn join_call(&self, door: DoorKind, report: CallReport) -> Result<(), DeliveryError> {
        let frame = Frame::Call {
            to: Target {
                uid: self.uid.clone(),
                role: self.role,
                session: self.session,
            },
            door,
            report,
        };
        self.inner
            .publish(&self.node, frame)
            .await
            .map(drop)
            .map_err(|_| DeliveryError::Unreachable)
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
            .try_send_event(
                &self.node,
                &self.uid,
                self.role,
                self.session,
                event.clone(),
            )
            .await;
        let nobody_listened = match outcome {
            Ok(()) => return Ok(()),
            // Another route could deliver it a second time (a Redis command
            // retried across a failover ran late): never try one.
            Err(SendFailed {
                may_arrive: true,
                error,
            }) => return Err(error),
            Err(SendFailed {
                error: DeliveryError::Unreachable,
                ..
            }) => true,
            Err(SendFailed {
                error: DeliveryError::Gone,
                ..
            }) => false,
            Err(SendFailed { error, .. }) => return Err(error),
        };
        // The cached route may be stale (the peer was replaced, left, moved
        // or its node died): forget it and ask Redis once.
        let sender_role = self.role.peer();
        self.inner
            .local
            .set_route(&self.uid, sender_role, sender, None);
        match self.inner.lookup_peer(&self.uid, sender_role, sender).await {
            // The route was not stale and its node seemed not to listen. On a
            // Redis Cluster that is not proof that nothing was
            // delivered (SPUBLISH counts only the subscribers on the node
            // that ran it, while the shard's other nodes deliver it too), so
            // the same frame is never sent to the same session twice.
            Ok(_)
                if nobody_listened
                    && self.inner.local.route(&self.uid, sender_role, sender)
                        == Some((self.node.clone(), self.session)) =>
            {
                metrics::cluster_resend_withheld();
                Err(DeliveryError::Unreachable)
            }
            Ok(peer) => peer.deliver(event).await,
            Err(RouteError::Registry(_)) => Err(DeliveryError::Unreachable),
            Err(RouteError::NoPeer | RouteError::NotOwner) => Err(DeliveryError::Gone),
        }
    }
}

/// `SSUBSCRIBE`s this node's channel (relay frames, published to its shard)
/// and `SUBSCRIBE`s it (the frames the Lua scripts publish) on `connection`.
async fn subscribe_cluster(
    connection: &mut ClusterConnection,
    channel: &str,
) -> redis::RedisResult<()> {
    connection.ssubscribe(channel).await?;
    connection.subscribe(channel).await
}

/// How listening to the node's channel ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Heard {
    /// The subscription was lost: subscribe again.
    Lost,
    /// The node is stopping.
    Stopped,
}

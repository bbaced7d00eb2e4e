//! Signed webhooks (docs/HOOKS.md): the core's [`HookEvent`]s and decided
//! calls, numbered, signed and POSTed to `--webhook-url`.
//!
//! - Bounded: at most `--webhook-queue` events wait in all (queued or
//!   being retried, over every lane); past it a new event is dropped,
//!   counted (`signalgate_webhook_dropped_total{reason="queue_full"}`) and
//!   logged. Emitting never waits, so a slow or dead receiver never slows
//!   relaying. Events still waiting when shutdown's flush ends are counted
//!   (`reason="shutdown"`) and logged.
//! - In order per uid: events are spread over [`LANES`] workers by uid; a
//!   worker delivers its events one at a time, so a later event of a uid
//!   waits for an earlier one's retries.
//! - At least once: a failed attempt (not 2xx, or no answer within
//!   `--webhook-timeout`) is retried with exponential backoff and full
//!   jitter, with the same `id`, up to `--webhook-max-attempts`; then the
//!   event is dropped and counted (`reason="attempts_exhausted"`).
//! - Redirects are never followed: a 3xx answer is a failed attempt (a
//!   301/302/303 would turn the POST into a GET without the body, and a
//!   307/308 would send the signed body to whatever host `Location` names).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::core::call_report::CallPath;
use crate::core::call_stats::CallRecord;
use crate::core::hooks::{HookEvent, HookKind, HookSink};
use crate::core::{DoorKind, Uid};
use crate::protocol::admin::rfc3339_millis;
use crate::telemetry::metrics;

/// Workers delivering events (each in order for its uids).
pub const LANES: usize = 8;
/// The first retry waits up to this long; each next one twice as long.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// No retry waits longer than this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Signalgate-Signature";

/// How webhooks are sent.
#[derive(Clone)]
pub struct WebhookConfig {
    /// Where to POST.
    pub url: reqwest::Url,
    /// The signing secret.
    pub secret: Arc<[u8]>,
    /// One attempt's deadline.
    pub timeout: Duration,
    /// Attempts per event.
    pub max_attempts: u32,
    /// Events held at most.
    pub queue: usize,
    /// This node's name (the `node` field).
    pub node: Arc<str>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &crate::telemetry::redact_url(self.url.as_str()))
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

/// Why webhooks cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookSetupError {
    /// The URL is not an http(s) URL.
    #[error("--webhook-url must be an http:// or https:// URL: {0}")]
    BadUrl(String),
    /// A URL without a secret.
    #[error("--webhook-url needs --webhook-secret (bodies are signed)")]
    NoSecret,
    /// The HTTP client could not be built.
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(String),
}

impl WebhookConfig {
    /// The configuration from the flags, or `None` without `--webhook-url`.
    pub fn from_flags(
        url: Option<&str>,
        secret: Option<&str>,
        (timeout, max_attempts, queue): (Duration, u32, usize),
        node: &str,
    ) -> Result<Option<WebhookConfig>, WebhookSetupError> {
        let Some(url) = url else { return Ok(None) };
        let url = reqwest::Url::parse(url).map_err(|e| WebhookSetupError::BadUrl(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(WebhookSetupError::BadUrl(url.to_string()));
        }
        let secret = secret
            .filter(|secret| !secret.is_empty())
            .ok_or(WebhookSetupError::NoSecret)?;
        Ok(Some(WebhookConfig {
            url,
            secret: Arc::from(secret.as_bytes()),
            timeout,
            max_attempts: max_attempts.max(1),
            queue: queue.max(1),
            node: Arc::from(node),
        }))
    }
}

/// The JSON body of one webhook.
#[derive(Debug, Serialize)]
struct Body<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    uid: &'a str,
    role: &'static str,
    session: String,
    peer_session: Option<String>,
    door: Option<&'static str>,
    node: &'a str,
    epoch: u64,
    at: String,
    reason: Option<&'static str>,
}

/// The JSON body of a call's webhook (`call.connected`, `call.failed`,
/// `call.ended`).
#[derive(Debug, Serialize)]
struct CallBody<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    uid: &'a str,
    call: &'a str,
    path: Option<&'static str>,
    #[serde(rename = "setupMs")]
    setup_ms: Option<u64>,
    #[serde(rename = "durationMs")]
    duration_ms: Option<u64>,
    reason: Option<&'a str>,
    one_sided: bool,
    web_door: Option<&'static str>,
    app_door: Option<&'static str>,
    node: &'a str,
    epoch: u64,
    at: String,
}

/// One event on its way.
struct Pending {
    id: String,
    body: String,
    happened: Instant,
}

/// The webhook sender: the core's [`HookSink`].
#[derive(Debug)]
pub struct Webhooks {
    lanes: Vec<mpsc::Sender<Pending>>,
    node: Arc<str>,
    /// The last epoch given out (microseconds of wall time, strictly rising).
    clock: AtomicU64,
    /// Events waiting (queued or being retried).
    depth: Arc<AtomicUsize>,
    /// Events dropped for a full queue (logged every so often).
    dropped: AtomicU64,
    /// Events held at most, over every lane.
    capacity: usize,
}

impl Webhooks {
    /// Starts the lane workers; they run until the sender is dropped and
    /// their queues are empty.
    pub fn start(config: WebhookConfig) -> Result<Arc<Webhooks>, WebhookSetupError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("signalgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WebhookSetupError::Client(e.to_string()))?;
        let depth = Arc::new(AtomicUsize::new(0));
        // Each lane could take the whole queue: the bound is the total
        // (`depth`, checked in `emit`), whichever lanes the events fall in.
        let lanes = (0..LANES)
            .map(|_| {
                let (sender, receiver) = mpsc::channel(config.queue);
                tokio::spawn(deliver_lane(
                    receiver,
                    client.clone(),
                    config.clone(),
                    Arc::clone(&depth),
                ));
                sender
            })
            .collect();
        Ok(Arc::new(Webhooks {
            lanes,
            node: Arc::clone(&config.node),
            clock: AtomicU64::new(0),
            depth,
            dropped: AtomicU64::new(0),
            capacity: config.queue,
        }))
    }

    /// The next epoch: the wall clock in microseconds, or one more than the
    /// last when the clock has not moved on (or went back).
    fn next_epoch(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
            });
        let previous = self
            .clock
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or_else(|last| last);
        now.max(previous + 1)
    }

    /// Events waiting now (queued or being retried).
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Acquire)
    }

    /// Waits until every queued event is delivered or dropped, or `bound`
    /// passes (shutdown). What still waits then is abandoned: counted
    /// (`signalgate_webhook_dropped_total{reason="shutdown"}`), logged, and
    /// returned.
    pub async fn flush(&self, bound: Duration) -> usize {
        let _ = tokio::time::timeout(bound, async {
            while self.depth() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let abandoned = self.depth();
        if abandoned > 0 {
            for _ in 0..abandoned {
                metrics::webhook_dropped("shutdown");
            }
            warn!(
                abandoned,
                waited = ?bound,
                "shutting down with webhook events undelivered: they are dropped"
            );
        }
        abandoned
    }
}

impl HookSink for Webhooks {
    fn emit(&self, event: HookEvent) {
        let epoch = self.next_epoch();
        let id = format!("{:032x}", rand::random::<u128>());
        let body = Body {
            id: id.clone(),
            kind: event.kind.as_str(),
            uid: event.uid.as_str(),
            role: event.role.as_str(),
            session: event.session.to_string(),
            peer_session: event.peer_session.map(|peer| peer.to_string()),
            door: event.door.map(|door| door.as_str()),
            node: &self.node,
            epoch,
            at: rfc3339_millis(SystemTime::now()),
            reason: event.reason,
        };
        self.queue(&event.uid, event.kind, id, serde_json::to_string(&body));
    }

    fn emit_call(&self, record: &CallRecord) {
        let kind = HookKind::of_call(record.result);
        let epoch = self.next_epoch();
        let id = format!("{:032x}", rand::random::<u128>());
        let body = CallBody {
            id: id.clone(),
            kind: kind.as_str(),
            uid: record.uid.as_str(),
            call: &record.call,
            path: record.path.map(CallPath::as_str),
            setup_ms: record.setup_ms,
            duration_ms: record.duration_ms,
            reason: record.reason.as_deref(),
            one_sided: record.one_sided,
            web_door: record.doors.0.map(DoorKind::as_str),
            app_door: record.doors.1.map(DoorKind::as_str),
            node: &self.node,
            epoch,
            at: rfc3339_millis(record.at),
        };
        self.queue(&record.uid, kind, id, serde_json::to_string(&body));
    }
}

impl Webhooks {
    /// Queues one event's body on its uid's lane, within the capacity (past
    /// it the event is dropped and counted).
    fn queue(&self, uid: &Uid, kind: HookKind, id: String, body: serde_json::Result<String>) {
        let Ok(body) = body else {
            return;
        };
        let lane = uid.shard_index(self.lanes.len());
        let pending = Pending {
            id,
            body,
            happened: Instant::now(),
        };
        // Counted before it is queued (the worker may finish it at once),
        // and only while the total is under the capacity.
        let admitted = self
            .depth
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |depth| {
                (depth < self.capacity).then_some(depth + 1)
            });
        let queued = match admitted {
            Ok(before) => match self.lanes[lane].try_send(pending) {
                Ok(()) => {
                    metrics::webhook_queue_depth(before + 1);
                    true
                }
                Err(_) => {
                    // The lane's worker is gone (shutting down).
                    let left = self.depth.fetch_sub(1, Ordering::AcqRel) - 1;
                    metrics::webhook_queue_depth(left);
                    false
                }
            },
            Err(_) => false,
        };
        if !queued {
            metrics::webhook_dropped("queue_full");
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed);
            if dropped.is_power_of_two() || dropped == 0 {
                warn!(dropped = dropped + 1, kind = kind.as_str(), %uid, "webhook queue full: event dropped (the receiver is slow or down)");
            }
        }
    }
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &[u8], unix_seconds: u64, body: &str) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(digest.len() * 2);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    format!("t={unix_seconds},v1={hex}")
}

/// The wait before attempt `attempt + 1`: full jitter over an exponential
/// ceiling.
fn backoff(attempt: u32) -> Duration {
    let ceiling = FIRST_BACKOFF
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    ceiling.mul_f64(rand::random::<f64>().max(0.1))
}

/// One lane: its events, one at a time, each until delivered or dropped.
async fn deliver_lane(
    mut queue: mpsc::Receiver<Pending>,
    client: reqwest::Client,
    config: WebhookConfig,
    depth: Arc<AtomicUsize>,
) {
    while let Some(pending) = queue.recv().await {
        deliver(&client, &config, &pending).await;
        let left = depth.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::webhook_queue_depth(left);
    }
}

async fn deliver(client: &reqwest::Client, config: &WebhookConfig, pending: &Pending) {
    for attempt in 1..=config.max_attempts {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let outcome = client
            .post(config.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                SIGNATURE_HEADER,
                signature(&config.secret, now, &pending.body),
            )
            .body(pending.body.clone())
            .send()
            .await;
        let failure = match outcome {
            Ok(response) if response.status().is_success() => {
                metrics::webhook_delivery("delivered");
                metrics::webhook_latency(pending.happened.elapsed());
                return;
            }
            Ok(response) if response.status().is_redirection() => format!(
                "HTTP {} (redirects are not followed: point --webhook-url at the final URL)",
                response.status()
            ),
            Ok(response) => format!("HTTP {}", response.status()),
            Err(error) => error.to_string(),
        };
        if attempt == config.max_attempts {
            metrics::webhook_delivery("failed");
            metrics::webhook_dropped("attempts_exhausted");
            warn!(id = %pending.id, attempts = attempt, %failure, "webhook dropped after its last attempt");
            return;
        }
        metrics::webhook_delivery("retried");
        debug!(id = %pending.id, attempt, %failure, "webhook attempt failed; retrying");
        tokio::time::sleep(backoff(attempt)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        // Python: hmac.new(b"secret", b"1700000000.{}", hashlib.sha256).hexdigest()
        assert_eq!(
            signature(b"secret", 1_700_000_000, "{}"),
            "t=1700000000,v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        for attempt in 1..40 {
            let wait = backoff(attempt);
            assert!(wait <= MAX_BACKOFF, "{attempt}: {wait:?}");
        }
        assert!(backoff(1) <= FIRST_BACKOFF);
    }

    /// A receiver that accepts connections and never answers.
    async fn silent_receiver() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        format!("http://{address}/hooks")
    }

    fn event_of(uid: &str) -> HookEvent {
        HookEvent {
            kind: crate::core::hooks::HookKind::SessionRegistered,
            uid: crate::core::Uid::new(uid).expect("uid"),
            role: crate::core::Role::Web,
            session: crate::core::ids::SessionId::random(),
            peer_session: None,
            door: None,
            reason: None,
        }
    }

    /// `--webhook-queue 64` holds 64 events whichever lanes they fall in:
    /// all of one uid (one lane) fit, the 65th is dropped; and what still
    /// waits at shutdown is counted as abandoned.
    #[tokio::test]
    async fn the_queue_capacity_is_a_total_over_the_lanes() {
        let url = silent_receiver().await;
        let hooks = Webhooks::start(
            WebhookConfig::from_flags(
                Some(&url),
                Some("s"),
                (Duration::from_secs(30), 1, 64),
                "node",
            )
            .expect("config")
            .expect("on"),
        )
        .expect("start");
        for _ in 0..64 {
            hooks.emit(event_of("one-uid"));
        }
        assert_eq!(hooks.depth(), 64);
        assert_eq!(hooks.dropped.load(Ordering::Relaxed), 0);
        hooks.emit(event_of("one-uid"));
        hooks.emit(event_of("another-uid"));
        assert_eq!(hooks.depth(), 64);
        assert_eq!(hooks.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(hooks.flush(Duration::from_millis(50)).await, 64);
    }

    #[tokio::test]
    async fn epochs_rise_strictly() {
        let hooks = Webhooks::start(
            WebhookConfig::from_flags(
                Some("http://127.0.0.1:9/"),
                Some("s"),
                (Duration::from_secs(1), 1, 16),
                "node",
            )
            .expect("config")
            .expect("on"),
        )
        .expect("start");
        let mut last = 0;
        for _ in 0..10_000 {
            let epoch = hooks.next_epoch();
            assert!(epoch > last);
            last = epoch;
        }
    }
}

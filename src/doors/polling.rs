//! Bounds on Socket.IO's HTTP side, before socketioxide sees a request
//! (docs/SECURITY.md):
//!
//! - **Handshakes** (a request without `sid`) are rate-limited per client
//!   IP (`--socketio-handshake-rate`): 429 past it.
//! - **Long-polling sessions** are not connections, so the connection caps
//!   do not hold them: each is counted here from its handshake until it is
//!   silent for longer than Engine.IO lets it live (ping interval + ping
//!   timeout, after which socketioxide has closed it), at most
//!   `--max-connections` in all and `--max-connections-per-ip` per IP:
//!   503 past them.
//! - **A polling POST's body** must arrive within `--header-read-timeout`
//!   (408 past it), so a client trickling a large body cannot hold a
//!   request open.
//!
//! A WebSocket Engine.IO session is its connection, held by the connection
//! caps.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::core::limits::{RateLimit, TokenBucket, Verdict};
use crate::telemetry::metrics;

/// The most bytes of a polling handshake's answer read to find its `sid`.
const HANDSHAKE_ANSWER_BYTES: usize = 4096;

/// How often expired sessions and full buckets are swept out.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The bounds, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct PollingLimits {
    /// Long-polling sessions in all.
    pub max_sessions: usize,
    /// Long-polling sessions per client IP.
    pub max_sessions_per_ip: usize,
    /// Handshakes per client IP.
    pub handshake_rate: RateLimit,
    /// How long a session lives without a request (then socketioxide has
    /// closed it).
    pub session_lifetime: Duration,
    /// Deadline of a POST request, body included.
    pub body_timeout: Duration,
}

/// The shared state of the bounds: a cheap handle.
#[derive(Clone, Debug)]
pub struct PollingGuard {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    limits: PollingLimits,
    /// No `.await` while held: every critical section is a few map
    /// operations, so a std mutex serves.
    state: Mutex<GuardState>,
}

#[derive(Debug)]
struct GuardState {
    /// sid → (client IP, last request).
    sessions: HashMap<String, (IpAddr, Instant)>,
    per_ip: HashMap<IpAddr, usize>,
    buckets: HashMap<IpAddr, TokenBucket>,
    swept_at: Instant,
}

/// Why a handshake was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    Rate,
    Total,
    PerIp,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Rate => "socketio_handshake_rate",
            Refusal::Total => "max_polling_sessions",
            Refusal::PerIp => "max_polling_sessions_per_ip",
        }
    }

    fn response(self) -> Response {
        let status = match self {
            Refusal::Rate => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Total | Refusal::PerIp => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, format!("{}\n", self.label())).into_response()
    }
}

impl PollingGuard {
    /// A guard with no session counted.
    pub fn new(limits: PollingLimits) -> PollingGuard {
        PollingGuard {
            shared: Arc::new(Shared {
                limits,
                state: Mutex::new(GuardState {
                    sessions: HashMap::new(),
                    per_ip: HashMap::new(),
                    buckets: HashMap::new(),
                    swept_at: Instant::now(),
                }),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, GuardState> {
        crate::sync::lock(&self.shared.state)
    }

    /// Long-polling sessions counted now.
    pub fn sessions(&self) -> usize {
        let mut state = self.state();
        self.sweep(&mut state, Instant::now(), true);
        state.sessions.len()
    }

    /// Forgets sessions silent past their lifetime and buckets that are
    /// full again (once per `SWEEP_EVERY`, unless `now_anyway`).
    fn sweep(&self, state: &mut GuardState, now: Instant, now_anyway: bool) {
        if !now_anyway && now.duration_since(state.swept_at) < SWEEP_EVERY {
            return;
        }
        state.swept_at = now;
        let lifetime = self.shared.limits.session_lifetime;
        let GuardState {
            sessions, per_ip, ..
        } = state;
        sessions.retain(|_, (ip, seen)| {
            let alive = now.duration_since(*seen) <= lifetime;
            if !alive && let Some(count) = per_ip.get_mut(ip) {
                *count -= 1;
                if *count == 0 {
                    per_ip.remove(ip);
                }
            }
            alive
        });
        state.buckets.retain(|_, bucket| !bucket.is_full_at(now));
    }

    /// Whether a handshake from `ip` may go ahead now.
    fn admit(&self, ip: IpAddr, polling: bool) -> Result<(), Refusal> {
        let limits = self.shared.limits;
        let now = Instant::now();
        let mut state = self.state();
        self.sweep(&mut state, now, false);
        if limits.handshake_rate.enabled() {
            let bucket = state
                .buckets
                .entry(ip)
                .or_insert_with(|| TokenBucket::new(limits.handshake_rate));
            if bucket.take(now) != Verdict::Allowed {
                return Err(Refusal::Rate);
            }
        }
        if polling {
            if state.sessions.len() >= limits.max_sessions {
                return Err(Refusal::Total);
            }
            if state.per_ip.get(&ip).copied().unwrap_or(0) >= limits.max_sessions_per_ip {
                return Err(Refusal::PerIp);
            }
        }
        Ok(())
    }

    /// Counts a new long-polling session.
    fn record(&self, sid: String, ip: IpAddr) {
        let mut state = self.state();
        if state.sessions.insert(sid, (ip, Instant::now())).is_none() {
            *state.per_ip.entry(ip).or_insert(0) += 1;
        }
    }

    /// A request of session `sid`: it is alive.
    fn touch(&self, sid: &str) {
        if let Some((_, seen)) = self.state().sessions.get_mut(sid) {
            *seen = Instant::now();
        }
    }
}

/// The middleware over `/socket.io/`.
pub async fn guard(
    State(guard): State<PollingGuard>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let query = request.uri().query().unwrap_or_default();
    let parameter = |name: &str| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    let (sid, transport) = (parameter("sid"), parameter("transport"));
    if let Some(sid) = &sid {
        guard.touch(sid);
    }
    if request.method() == Method::POST {
        let deadline = guard.shared.limits.body_timeout;
        return match tokio::time::timeout(deadline, next.run(request)).await {
            Ok(response) => response,
            Err(_) => {
                metrics::stalled("slow_body");
                (
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time\n",
                )
                    .into_response()
            }
        };
    }
    if sid.is_some() {
        return next.run(request).await;
    }
    let polling = transport.as_deref() == Some("polling");
    if let Err(refusal) = guard.admit(peer.ip(), polling) {
        metrics::refused(refusal.label());
        return refusal.response();
    }
    let response = next.run(request).await;
    if !polling || response.status() != StatusCode::OK {
        return response;
    }
    // The handshake's answer names the new session: `0{"sid":"…",…}`
    // (Engine.IO 3 prefixes a length). It is small; read it and pass it on.
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, HANDSHAKE_ANSWER_BYTES).await else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "handshake answer too large\n",
        )
            .into_response();
    };
    if let Some(sid) = handshake_sid(&bytes) {
        guard.record(sid, peer.ip());
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The `sid` of an Engine.IO handshake answer.
fn handshake_sid(answer: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(answer).ok()?;
    let start = text.find("\"sid\":\"")? + "\"sid\":\"".len();
    let length = text[start..].find('"')?;
    Some(text[start..start + length].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> PollingLimits {
        PollingLimits {
            max_sessions: 3,
            max_sessions_per_ip: 2,
            handshake_rate: RateLimit {
                per_second: 0.0,
                burst: 0.0,
            },
            session_lifetime: Duration::from_millis(50),
            body_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_sid_is_read_from_both_engine_io_versions() {
        assert_eq!(
            handshake_sid(br#"0{"sid":"abc-1","upgrades":["websocket"]}"#).as_deref(),
            Some("abc-1")
        );
        assert_eq!(
            handshake_sid(br#"97:0{"sid":"xyz","upgrades":[]}2:40"#).as_deref(),
            Some("xyz")
        );
        assert_eq!(handshake_sid(b"garbage"), None);
    }

    #[test]
    fn sessions_are_capped_in_all_and_per_ip_and_expire() {
        let guard = PollingGuard::new(limits());
        let (a, b): (IpAddr, IpAddr) = (
            "10.0.0.1".parse().expect("ip"),
            "10.0.0.2".parse().expect("ip"),
        );
        for n in 0..2 {
            guard.admit(a, true).expect("room");
            guard.record(format!("a{n}"), a);
        }
        assert_eq!(guard.admit(a, true), Err(Refusal::PerIp));
        assert_eq!(
            guard.admit(a, false),
            Ok(()),
            "websocket handshakes are connections"
        );
        guard.admit(b, true).expect("room");
        guard.record("b0".into(), b);
        assert_eq!(guard.admit(b, true), Err(Refusal::Total));
        std::thread::sleep(Duration::from_millis(80));
        guard.touch("b0");
        assert_eq!(
            guard.sessions(),
            1,
            "the silent ones expired, the touched one lives"
        );
        guard.admit(a, true).expect("room again");
    }

    #[test]
    fn handshakes_are_rate_limited_per_ip() {
        let guard = PollingGuard::new(PollingLimits {
            handshake_rate: RateLimit {
                per_second: 1.0,
                burst: 2.0,
            },
            ..limits()
        });
        let (a, b): (IpAddr, IpAddr) = (
            "10.0.0.1".parse().expect("ip"),
            "10.0.0.2".parse().expect("ip"),
        );
        assert_eq!(guard.admit(a, false), Ok(()));
        assert_eq!(guard.admit(a, false), Ok(()));
        assert_eq!(guard.admit(a, false), Err(Refusal::Rate));
        assert_eq!(
            guard.admit(b, false),
            Ok(()),
            "another IP has its own bucket"
        );
    }
}

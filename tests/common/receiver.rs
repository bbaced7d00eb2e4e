//! A real webhook receiver for tests: an axum server on 127.0.0.1:0 that
//! records every POST (headers and body) and answers as told: 200, a few
//! 500s first, or never.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// How the receiver answers.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// 200 at once.
    Accept,
    /// 500 to the first `n` attempts, then 200.
    FailFirst(usize),
    /// Never answers.
    Hang,
    /// Answers every POST with this redirect status to `/landing` (which
    /// counts whatever reaches it, by any method).
    Redirect(u16),
}

/// One POST as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub signature: String,
    pub content_type: String,
    pub body: String,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

#[derive(Clone)]
struct Shared {
    behaviour: Behaviour,
    attempts: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Received>>>,
    landed: Arc<AtomicUsize>,
}

/// A running receiver.
pub struct Receiver {
    pub address: SocketAddr,
    shared: Shared,
}

impl Receiver {
    pub async fn start(behaviour: Behaviour) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let shared = Shared {
            behaviour,
            attempts: Arc::default(),
            received: Arc::default(),
            landed: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/hooks", axum::routing::post(receive))
            .route("/landing", axum::routing::any(land))
            .with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { address, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.address)
    }

    /// Requests that followed a redirect to `/landing`.
    pub fn landed(&self) -> usize {
        self.shared.landed.load(Ordering::SeqCst)
    }

    /// Every POST so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("lock").clone()
    }

    /// The accepted events (the last attempt of each id that got a 200),
    /// in arrival order: with `FailFirst`, the attempts the receiver
    /// refused are left out.
    pub fn accepted(&self) -> Vec<Value> {
        let refused = match self.shared.behaviour {
            Behaviour::FailFirst(n) => n,
            _ => 0,
        };
        self.received()
            .into_iter()
            .skip(refused)
            .map(|r| r.json())
            .collect()
    }

    /// Waits until `count` events were accepted; returns them.
    pub async fn wait_for(&self, count: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let accepted = self.accepted();
            if accepted.len() >= count {
                return accepted;
            }
            assert!(
                Instant::now() < deadline,
                "{count} webhooks expected, got {}: {accepted:#?}",
                accepted.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn land(State(shared): State<Shared>) -> StatusCode {
    shared.landed.fetch_add(1, Ordering::SeqCst);
    StatusCode::OK
}

async fn receive(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    shared.received.lock().expect("lock").push(Received {
        signature: header("signalgate-signature"),
        content_type: header("content-type"),
        body,
        at: Instant::now(),
    });
    let attempt = shared.attempts.fetch_add(1, Ordering::SeqCst);
    match shared.behaviour {
        Behaviour::Accept => StatusCode::OK.into_response(),
        Behaviour::FailFirst(n) if attempt < n => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Behaviour::FailFirst(_) => StatusCode::OK.into_response(),
        Behaviour::Hang => {
            std::future::pending::<()>().await;
            StatusCode::OK.into_response()
        }
        Behaviour::Redirect(status) => (
            StatusCode::from_u16(status).expect("a status"),
            [(axum::http::header::LOCATION, "/landing")],
        )
            .into_response(),
    }
}

/// Checks a `Signalgate-Signature` the way a receiver would: the HMAC of
/// `"<t>.<body>"` with the secret, compared in constant time, and `t` no
/// older than five minutes.
pub fn verify(secret: &str, received: &Received) -> Result<(), String> {
    let mut t = None;
    let mut v1 = None;
    for part in received.signature.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<u64>().ok(),
            Some(("v1", value)) => v1 = Some(value.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return Err(format!(
            "malformed signature header {:?}",
            received.signature
        ));
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    if now.abs_diff(t) > 300 {
        return Err(format!("signature time {t} is {}s off", now.abs_diff(t)));
    }
    let bytes: Vec<u8> = (0..v1.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&v1[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.{}", received.body).as_bytes());
    mac.verify_slice(&bytes)
        .map_err(|_| "bad signature".to_owned())
}

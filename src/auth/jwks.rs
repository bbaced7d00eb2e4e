//! Keys from an identity provider's JWKS (`--jwt-jwks-url`): RS256, ES256
//! and EdDSA keys by `kid`, fetched at startup (readiness waits for the
//! first set), refreshed every `--jwt-jwks-refresh` and at once — at most
//! every [`UNKNOWN_KID_REFRESH`] — when a token names a `kid` the set does
//! not hold. A failed fetch keeps the last good set; it is logged and
//! counted (`signalgate_jwks_fetches_total{outcome="failed"}`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::sync::lock;
use crate::telemetry::{metrics, redact_url};

/// The shortest time between two fetches caused by unknown `kid`s.
pub const UNKNOWN_KID_REFRESH: Duration = Duration::from_secs(30);
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between attempts while no set was ever fetched.
const FIRST_FETCH_RETRY: Duration = Duration::from_secs(1);
/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// A verification key and the one algorithm it verifies.
pub(super) type Key = (Arc<DecodingKey>, Algorithm);

/// The key set and how it is kept fresh.
pub struct JwksKeys {
    url: reqwest::Url,
    client: reqwest::Client,
    refresh: Duration,
    keys: RwLock<Arc<HashMap<String, Key>>>,
    loaded: AtomicBool,
    /// When the last fetch started (for the unknown-`kid` rate limit).
    last_fetch: Mutex<Option<Instant>>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for JwksKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksKeys")
            .field("url", &redact_url(self.url.as_str()))
            .field("keys", &self.read().len())
            .finish_non_exhaustive()
    }
}

/// Why the JWKS cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The URL is not http(s).
    #[error("--jwt-jwks-url must be an http:// or https:// URL: {0}")]
    BadUrl(String),
    /// The HTTP client could not be built.
    #[error("cannot build the JWKS HTTP client: {0}")]
    Client(String),
}

/// The algorithm a JWK verifies, if it is one signalgate takes: its `alg`
/// when it names one, else what its key type implies. Encryption keys and
/// other algorithms are left out.
fn algorithm_of(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(implied),
        Some(KeyAlgorithm::RS256) if implied == Algorithm::RS256 => Some(implied),
        Some(KeyAlgorithm::ES256) if implied == Algorithm::ES256 => Some(implied),
        Some(KeyAlgorithm::EdDSA) if implied == Algorithm::EdDSA => Some(implied),
        Some(_) => None,
    }
}

/// The usable keys of a JWKS document, by `kid`.
pub(super) fn keys_of(document: &[u8]) -> Result<HashMap<String, Key>, String> {
    let set: JwkSet = serde_json::from_slice(document).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let (Some(kid), Some(algorithm)) = (jwk.common.key_id.clone(), algorithm_of(jwk)) else {
            continue;
        };
        if let Ok(key) = DecodingKey::from_jwk(jwk) {
            keys.insert(kid, (Arc::new(key), algorithm));
        }
    }
    Ok(keys)
}

/// The body of `response`, read until `limit` bytes and no further: a
/// larger answer is refused as soon as it passes the limit, so a huge or
/// endless body never takes more than `limit` bytes of memory.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(format!("a JWKS over {limit} bytes is too large"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(format!("a JWKS over {limit} bytes is too large"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl JwksKeys {
    /// A key set fetched from `url`, refreshed every `refresh` once
    /// [`JwksKeys::run`] runs.
    pub fn new(url: &str, refresh: Duration) -> Result<Arc<JwksKeys>, JwksError> {
        let url = reqwest::Url::parse(url).map_err(|e| JwksError::BadUrl(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(JwksError::BadUrl(url.to_string()));
        }
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| JwksError::Client(e.to_string()))?;
        Ok(Arc::new(JwksKeys {
            url,
            client,
            refresh: refresh.max(Duration::from_secs(1)),
            keys: RwLock::new(Arc::default()),
            loaded: AtomicBool::new(false),
            last_fetch: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }))
    }

    fn read(&self) -> Arc<HashMap<String, Key>> {
        match self.keys.read() {
            Ok(keys) => Arc::clone(&keys),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Whether a set was ever fetched (`/readyz` waits for it).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Fetches the set now; a failure keeps the last good one.
    pub async fn fetch(&self) -> Result<usize, String> {
        let _one_at_a_time = self.fetching.lock().await;
        *lock(&self.last_fetch) = Some(Instant::now());
        let fetched = async {
            let response = self
                .client
                .get(self.url.clone())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("HTTP {}", response.status()));
            }
            let body = read_capped(response, MAX_JWKS_BYTES).await?;
            keys_of(&body)
        }
        .await;
        match fetched {
            Ok(keys) => {
                let count = keys.len();
                match self.keys.write() {
                    Ok(mut held) => *held = Arc::new(keys),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(keys),
                }
                self.loaded.store(true, Ordering::Release);
                metrics::jwks_fetch("ok");
                info!(url = %redact_url(self.url.as_str()), keys = count, "JWKS fetched");
                Ok(count)
            }
            Err(error) => {
                metrics::jwks_fetch("failed");
                warn!(url = %redact_url(self.url.as_str()), %error, "JWKS fetch failed; keeping the last good set");
                Err(error)
            }
        }
    }

    /// The key named `kid`; a `kid` the set does not hold triggers a fetch
    /// first, unless one started less than [`UNKNOWN_KID_REFRESH`] ago.
    pub(super) async fn key(&self, kid: &str) -> Option<Key> {
        if let Some(key) = self.read().get(kid) {
            return Some(key.clone());
        }
        let recently = lock(&self.last_fetch).is_some_and(|at| at.elapsed() < UNKNOWN_KID_REFRESH);
        if !recently {
            let _ = self.fetch().await;
        }
        self.read().get(kid).cloned()
    }

    /// Fetches at once (retrying every second until a set arrives), then
    /// every refresh interval, until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let wait = match self.fetch().await {
                Err(_) if !self.is_loaded() => FIRST_FETCH_RETRY,
                _ => self.refresh,
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer of 64 MiB (chunked, no length) is refused once 1 MiB has
    /// been read: the server manages to write only the limit plus what the
    /// sockets buffer, never the whole body.
    #[tokio::test]
    async fn a_huge_answer_is_refused_without_being_read_whole() {
        use std::sync::atomic::AtomicUsize;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        const BODY: usize = 64 << 20;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let written = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&written);
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b' '; 64 * 1024];
            let framed = [
                format!("{:x}\r\n", chunk.len()).into_bytes(),
                chunk,
                b"\r\n".to_vec(),
            ]
            .concat();
            while counter.load(Ordering::Relaxed) < BODY {
                if socket.write_all(&framed).await.is_err() {
                    return;
                }
                counter.fetch_add(64 * 1024, Ordering::Relaxed);
            }
        });
        let keys = JwksKeys::new(&format!("http://{address}/jwks"), Duration::from_secs(60))
            .expect("keys");
        let error = keys.fetch().await.expect_err("too large");
        assert!(error.contains("too large"), "{error}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = written.load(Ordering::Relaxed);
        assert!(
            sent < 16 << 20,
            "{sent} bytes were read of a refused answer"
        );
    }

    #[test]
    fn only_signing_keys_of_the_three_algorithms_with_a_kid_are_kept() {
        let document = serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "enc", "use": "enc", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "wrong-alg", "alg": "RS256", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        ]});
        let keys = keys_of(document.to_string().as_bytes()).expect("a JWKS");
        assert_eq!(keys.len(), 1, "{:?}", keys.keys().collect::<Vec<_>>());
        assert_eq!(keys["ed"].1, Algorithm::EdDSA);
        assert!(keys_of(b"{\"nope\": 1}").is_err());
    }
}

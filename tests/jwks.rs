//! JWKS authentication (`--jwt-jwks-url`) against a real JWKS server in the
//! test: RS256, ES256 and EdDSA keys by `kid`, a rotation, a failed
//! refresh, readiness, and `--jwt-issuer` / `--jwt-audience` in every key
//! mode.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{TestGateway, assert_refused, http_get, test_config};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use signalgate_client::Door;

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "signalgate";

/// A JWKS endpoint whose set the test changes, counting fetches; it can be
/// made to fail.
#[derive(Clone, Default)]
struct JwksServer {
    set: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
}

impl JwksServer {
    async fn start(set: Value) -> (JwksServer, SocketAddr) {
        let server = JwksServer {
            set: Arc::new(Mutex::new(set)),
            ..JwksServer::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let app = axum::Router::new()
            .route("/jwks.json", axum::routing::get(serve))
            .with_state(server.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (server, address)
    }

    fn publish(&self, set: Value) {
        *self.set.lock().expect("lock") = set;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

async fn serve(State(server): State<JwksServer>) -> (StatusCode, String) {
    server.fetches.fetch_add(1, Ordering::SeqCst);
    if server.failing.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "down".into());
    }
    (StatusCode::OK, server.set.lock().expect("lock").to_string())
}

/// A signing key and its public JWK.
struct SigningKey {
    kid: &'static str,
    algorithm: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

fn rsa_key(kid: &'static str) -> SigningKey {
    let private = include_str!("fixtures/jwks-rsa-private.pem");
    let public: Value =
        serde_json::from_str(include_str!("fixtures/jwks-rsa-public.json")).expect("json");
    SigningKey {
        kid,
        algorithm: Algorithm::RS256,
        encoding: EncodingKey::from_rsa_pem(private.as_bytes()).expect("rsa"),
        jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": public["n"], "e": public["e"]}),
    }
}

fn ec_key(kid: &'static str) -> SigningKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let point = pair.public_key_raw();
    SigningKey {
        kid,
        algorithm: Algorithm::ES256,
        encoding: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("ec"),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])}),
    }
}

fn ed_key(kid: &'static str) -> SigningKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
    SigningKey {
        kid,
        algorithm: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).expect("ed"),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw())}),
    }
}

fn set_of(keys: &[&SigningKey]) -> Value {
    json!({"keys": keys.iter().map(|key| key.jwk.clone()).collect::<Vec<_>>()})
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A token for `sub` signed by `key`, with `claims` merged over the usual.
fn token(key: &SigningKey, sub: &str, claims: Value) -> String {
    let mut body = json!({"sub": sub, "exp": now() + 600, "iss": ISSUER, "aud": AUDIENCE});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), claims.as_object()) {
        for (name, value) in extra {
            if value.is_null() {
                body.remove(name);
            } else {
                body.insert(name.clone(), value.clone());
            }
        }
    }
    let mut header = Header::new(key.algorithm);
    header.kid = Some(key.kid.to_owned());
    jsonwebtoken::encode(&header, &body, &key.encoding).expect("encode")
}

async fn gateway_on(address: SocketAddr, refresh: Duration) -> TestGateway {
    TestGateway::start_with(signalgate::Config {
        jwt_jwks_url: Some(format!("http://{address}/jwks.json")),
        jwt_jwks_refresh: refresh,
        jwt_issuer: Some(ISSUER.into()),
        jwt_audience: Some(AUDIENCE.into()),
        ..test_config()
    })
    .await
}

async fn wait_ready(gateway: &TestGateway) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !http_get(gateway, "/readyz").await.contains(" 200 ") {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn assert_admitted(gateway: &TestGateway, door: Door, token: &str, sub: &str) {
    let mut client = gateway.connect_with_token(door, Some(token)).await;
    client.register(sub, "web").await;
    client.close().await;
}

/// Keys of each algorithm by kid on every door, a rotation picked up by
/// the periodic refresh, a failed refresh keeping the last good set, and
/// the claims and header rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_every_key_in_the_set_and_only_those() {
    let (rsa, ec, ed) = (rsa_key("k1"), ec_key("k2"), ed_key("k3"));
    let (jwks, address) = JwksServer::start(set_of(&[&rsa, &ec])).await;
    jwks.failing.store(true, Ordering::SeqCst);
    let gateway = gateway_on(address, Duration::from_secs(1)).await;
    // Not ready until a set arrives.
    assert!(http_get(&gateway, "/readyz").await.contains(" 503 "));
    jwks.failing.store(false, Ordering::SeqCst);
    wait_ready(&gateway).await;

    for door in Door::ALL {
        assert_admitted(&gateway, door, &token(&rsa, "rs", json!({})), "rs").await;
        assert_admitted(&gateway, door, &token(&ec, "es", json!({})), "es").await;
        // Not in the set (yet).
        assert_refused(&gateway, door, Some(token(&ed, "ed", json!({})))).await;
    }
    // Claims and header rules.
    let refused = [
        token(&rsa, "x", json!({"iss": "https://other.test"})),
        token(&rsa, "x", json!({"aud": "someone-else"})),
        token(&rsa, "x", json!({"aud": null})),
        token(&rsa, "x", json!({"iss": null})),
        token(&rsa, "x", json!({"exp": now() - 3600})),
        {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = None;
            let body = json!({"sub": "x", "exp": now() + 600, "iss": ISSUER, "aud": AUDIENCE});
            jsonwebtoken::encode(&header, &body, &ec.encoding).expect("encode")
        },
        // HS256 "signed" with the RSA key's public modulus, naming its kid.
        {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some("k1".into());
            let body = json!({"sub": "x", "exp": now() + 600, "iss": ISSUER, "aud": AUDIENCE});
            let secret = rsa.jwk["n"].as_str().expect("n").to_owned();
            jsonwebtoken::encode(&header, &body, &EncodingKey::from_secret(secret.as_bytes()))
                .expect("encode")
        },
    ];
    for bad in refused {
        assert_refused(&gateway, Door::Ws, Some(bad)).await;
    }

    // Rotation: k1 leaves, k3 arrives; the periodic refresh (1 s) takes it.
    jwks.publish(set_of(&[&ec, &ed]));
    let deadline = Instant::now() + Duration::from_secs(10);
    let ed_token = token(&ed, "ed", json!({}));
    loop {
        let options = signalgate_client::ConnectOptions {
            token: Some(ed_token.clone()),
            ..Default::default()
        };
        if signalgate_client::Client::connect_with(Door::Ws, gateway.address, &options)
            .await
            .is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "the rotated set never arrived");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for door in Door::ALL {
        assert_admitted(&gateway, door, &ed_token, "ed").await;
        assert_refused(&gateway, door, Some(token(&rsa, "rs", json!({})))).await;
    }

    // The JWKS server fails: the last good set stays.
    jwks.failing.store(true, Ordering::SeqCst);
    let fetches = jwks.fetches();
    while jwks.fetches() < fetches + 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_admitted(&gateway, Door::Grpc, &token(&ec, "es", json!({})), "es").await;
    assert!(http_get(&gateway, "/readyz").await.contains(" 200 "));
    let metrics = http_get(&gateway, "/metrics").await;
    assert!(
        metrics.contains("signalgate_jwks_fetches_total{outcome=\"failed\"}"),
        "{metrics}"
    );
    gateway.stop().await;
}

/// A token naming an unknown kid makes the gateway fetch the set at once —
/// but not more often than every 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_refreshes_the_set_at_most_every_30_seconds() {
    let (ec, ed) = (ec_key("old"), ed_key("new"));
    let (jwks, address) = JwksServer::start(set_of(&[&ec])).await;
    let gateway = gateway_on(address, Duration::from_secs(600)).await;
    wait_ready(&gateway).await;
    let fetched = jwks.fetches();
    jwks.publish(set_of(&[&ec, &ed]));
    // Within 30 s of the last fetch: refused, nothing fetched.
    assert_refused(&gateway, Door::Ws, Some(token(&ed, "ed", json!({})))).await;
    assert_eq!(jwks.fetches(), fetched);
    tokio::time::sleep(signalgate::auth::jwks::UNKNOWN_KID_REFRESH + Duration::from_secs(1)).await;
    // Now the unknown kid is fetched at once and the token admitted.
    assert_admitted(&gateway, Door::SocketIo, &token(&ed, "ed", json!({})), "ed").await;
    assert_eq!(jwks.fetches(), fetched + 1);
    gateway.stop().await;
}

/// `--jwt-issuer` and `--jwt-audience` hold with a shared secret too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_and_audience_apply_to_a_shared_secret() {
    let secret = "issuer-audience-secret";
    let gateway = TestGateway::start_with(signalgate::Config {
        jwt_secret: Some(secret.into()),
        jwt_issuer: Some(ISSUER.into()),
        jwt_audience: Some(AUDIENCE.into()),
        ..test_config()
    })
    .await;
    let signed = |claims: Value| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("encode")
    };
    let good = signed(
        json!({"sub": "ian", "exp": now() + 600, "iss": ISSUER, "aud": [AUDIENCE, "other"]}),
    );
    assert_admitted(&gateway, Door::Ws, &good, "ian").await;
    for bad in [
        json!({"sub": "ian", "exp": now() + 600, "iss": ISSUER}),
        json!({"sub": "ian", "exp": now() + 600, "aud": AUDIENCE}),
        json!({"sub": "ian", "exp": now() + 600, "iss": "https://evil.test", "aud": AUDIENCE}),
    ] {
        assert_refused(&gateway, Door::Grpc, Some(signed(bad))).await;
    }
    gateway.stop().await;
}

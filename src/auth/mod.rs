//! Authentication: JSON Web Tokens checked at connection time, before any
//! session exists. Off by default (with a loud warning at startup); on with
//! `--jwt-secret` (HS256), `--jwt-public-key` (RS256 or ES256, PEM) or
//! `--jwt-jwks-url` (RS256, ES256 and EdDSA keys of an identity provider,
//! by `kid`: [`jwks`]).
//!
//! A token's `sub` is the only uid its connection may register as; an
//! optional `role` claim (`"web"` or `"app"`) restricts the role. `exp` is
//! required; with `--jwt-issuer` / `--jwt-audience`, `iss` / `aud` are
//! required and must match. A token's `alg` must be its key's: no
//! algorithm confusion.

pub mod jwks;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::core::{Identity, Role};

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token was presented.
    #[error("an authentication token is required")]
    Missing,
    /// The token is expired, badly signed, of the wrong algorithm, malformed
    /// or has no subject.
    #[error("invalid authentication token: {0}")]
    Invalid(String),
}

/// Setting up authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// The public key file could not be read.
    #[error("cannot read the JWT public key {path}: {source}")]
    ReadKey {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The public key is neither an RSA nor an EC PEM key.
    #[error("the JWT public key is neither an RSA nor an EC (P-256) PEM public key")]
    BadKey,
    /// More than one of a secret, a public key and a JWKS URL were given.
    #[error("give one of --jwt-secret, --jwt-public-key and --jwt-jwks-url")]
    Both,
    /// The JWKS URL cannot be used.
    #[error(transparent)]
    Jwks(#[from] jwks::JwksError),
    /// `--jwt-issuer` or `--jwt-audience` without a way to check tokens.
    #[error(
        "--jwt-issuer and --jwt-audience need --jwt-secret, --jwt-public-key or --jwt-jwks-url"
    )]
    ClaimsWithoutKey,
    /// Minting needs a shared secret.
    #[error("minting a token needs --jwt-secret")]
    NoSecret,
    /// The token could not be encoded.
    #[error("cannot encode the token: {0}")]
    Encode(String),
}

/// The claims signalgate reads.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
}

/// Whether and how connections authenticate.
#[derive(Clone)]
pub enum AuthPolicy {
    /// Anyone may connect and register as any uid (the seed's behaviour).
    Disabled,
    /// Every connection must present a valid token.
    Jwt {
        /// The verification key.
        key: Arc<DecodingKey>,
        /// Algorithm and required claims.
        validation: Arc<Validation>,
    },
    /// Every connection must present a token signed by a key of the
    /// identity provider's set, named by its `kid`.
    Jwks {
        /// The key set.
        keys: Arc<jwks::JwksKeys>,
        /// The required claims (the algorithm is each key's).
        claims: Arc<ClaimRules>,
    },
}

/// Claims required beyond `exp` and `sub`.
#[derive(Clone, Debug, Default)]
pub struct ClaimRules {
    /// `iss` must be this.
    pub issuer: Option<String>,
    /// `aud` must hold this.
    pub audience: Option<String>,
}

/// How tokens are checked: the flags of docs/SECURITY.md.
#[derive(Clone, Debug, Default)]
pub struct AuthSettings<'a> {
    /// `--jwt-secret`.
    pub secret: Option<&'a str>,
    /// `--jwt-public-key` (a PEM file).
    pub public_key_path: Option<&'a str>,
    /// `--jwt-jwks-url`.
    pub jwks_url: Option<&'a str>,
    /// `--jwt-jwks-refresh`.
    pub jwks_refresh: Duration,
    /// `--jwt-issuer`, `--jwt-audience`.
    pub claims: ClaimRules,
}

impl fmt::Debug for AuthPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthPolicy::Disabled => f.write_str("AuthPolicy::Disabled"),
            AuthPolicy::Jwt { validation, .. } => f
                .debug_struct("AuthPolicy::Jwt")
                .field("algorithms", &validation.algorithms)
                .finish_non_exhaustive(),
            AuthPolicy::Jwks { keys, claims } => f
                .debug_struct("AuthPolicy::Jwks")
                .field("keys", keys)
                .field("claims", claims)
                .finish(),
        }
    }
}

fn validation(algorithm: Algorithm, claims: &ClaimRules) -> Validation {
    let mut validation = Validation::new(algorithm);
    let mut required = vec!["exp", "sub"];
    if let Some(issuer) = &claims.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    if let Some(audience) = &claims.audience {
        validation.set_audience(&[audience]);
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);
    // `nbf`, when present, is checked too (with the same leeway as `exp`).
    validation.validate_nbf = true;
    validation.leeway = 5;
    validation
}

impl AuthPolicy {
    /// The policy the settings ask for (no key at all: disabled).
    pub fn new(settings: &AuthSettings<'_>) -> Result<Self, AuthSetupError> {
        let claims = &settings.claims;
        let given = [
            settings.secret.is_some(),
            settings.public_key_path.is_some(),
            settings.jwks_url.is_some(),
        ];
        let jwt = |key: DecodingKey, algorithm| AuthPolicy::Jwt {
            key: Arc::new(key),
            validation: Arc::new(validation(algorithm, claims)),
        };
        match given.iter().filter(|given| **given).count() {
            0 if claims.issuer.is_some() || claims.audience.is_some() => {
                return Err(AuthSetupError::ClaimsWithoutKey);
            }
            0 => return Ok(AuthPolicy::Disabled),
            1 => {}
            _ => return Err(AuthSetupError::Both),
        }
        if let Some(secret) = settings.secret {
            return Ok(jwt(
                DecodingKey::from_secret(secret.as_bytes()),
                Algorithm::HS256,
            ));
        }
        if let Some(url) = settings.jwks_url {
            return Ok(AuthPolicy::Jwks {
                keys: jwks::JwksKeys::new(url, settings.jwks_refresh)?,
                claims: Arc::new(claims.clone()),
            });
        }
        let path = settings.public_key_path.unwrap_or_default();
        let pem = std::fs::read(path).map_err(|source| AuthSetupError::ReadKey {
            path: path.to_owned(),
            source,
        })?;
        if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
            Ok(jwt(key, Algorithm::RS256))
        } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
            Ok(jwt(key, Algorithm::ES256))
        } else {
            Err(AuthSetupError::BadKey)
        }
    }

    /// The JWKS key set, when tokens are checked against one (it must be
    /// kept fresh: [`jwks::JwksKeys::run`]).
    pub fn jwks(&self) -> Option<&Arc<jwks::JwksKeys>> {
        match self {
            AuthPolicy::Jwks { keys, .. } => Some(keys),
            _ => None,
        }
    }

    /// Whether connections can be authenticated now (a JWKS not yet
    /// fetched cannot).
    pub fn is_ready(&self) -> bool {
        self.jwks().is_none_or(|keys| keys.is_loaded())
    }

    /// Whether tokens are required.
    pub fn enabled(&self) -> bool {
        !matches!(self, AuthPolicy::Disabled)
    }

    /// Checks the token a connection presented. `Ok(None)` when
    /// authentication is off (a token, if any, is ignored).
    pub async fn authenticate(&self, token: Option<&str>) -> Result<Option<Identity>, AuthError> {
        if matches!(self, AuthPolicy::Disabled) {
            return Ok(None);
        }
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let invalid = |e: jsonwebtoken::errors::Error| AuthError::Invalid(e.to_string());
        let claims = match self {
            AuthPolicy::Disabled => return Ok(None),
            AuthPolicy::Jwt { key, validation } => {
                jsonwebtoken::decode::<Claims>(token, key, validation).map_err(invalid)?
            }
            AuthPolicy::Jwks { keys, claims } => {
                let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
                let kid = header
                    .kid
                    .ok_or_else(|| AuthError::Invalid("the token names no key (kid)".into()))?;
                let (key, algorithm) = keys.key(&kid).await.ok_or_else(|| {
                    AuthError::Invalid(format!("no key {kid:?} in the identity provider's set"))
                })?;
                jsonwebtoken::decode::<Claims>(token, &key, &validation(algorithm, claims))
                    .map_err(invalid)?
            }
        }
        .claims;
        if claims.sub.is_empty() {
            return Err(AuthError::Invalid("the subject (sub) is empty".into()));
        }
        let role = match claims.role.as_deref() {
            None => None,
            Some(name) => Some(
                name.parse::<Role>()
                    .map_err(|unknown| AuthError::Invalid(format!("role claim: {unknown}")))?,
            ),
        };
        Ok(Some(Identity {
            subject: claims.sub,
            role,
        }))
    }
}

/// The token in an `Authorization: Bearer ...` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Mints an HS256 token for development (`signalgate token`).
pub fn mint(
    secret: &str,
    uid: &str,
    role: Option<Role>,
    ttl: Duration,
) -> Result<String, AuthSetupError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = Claims {
        sub: uid.to_owned(),
        exp: now + ttl.as_secs(),
        iat: Some(now),
        role: role.map(|r| r.as_str().to_owned()),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| AuthSetupError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_secret(secret: &str) -> AuthPolicy {
        AuthPolicy::new(&AuthSettings {
            secret: Some(secret),
            ..AuthSettings::default()
        })
        .expect("policy")
    }

    #[tokio::test]
    async fn minted_tokens_verify_and_carry_the_role() {
        let policy = with_secret("s3cret");
        let token =
            mint("s3cret", "alice", Some(Role::App), Duration::from_secs(60)).expect("mint");
        let identity = policy
            .authenticate(Some(&token))
            .await
            .expect("valid")
            .expect("identity");
        assert_eq!(identity.subject, "alice");
        assert_eq!(identity.role, Some(Role::App));
    }

    #[tokio::test]
    async fn bad_tokens_are_refused() {
        let policy = with_secret("s3cret");
        assert_eq!(policy.authenticate(None).await, Err(AuthError::Missing));
        let foreign = mint("other", "alice", None, Duration::from_secs(60)).expect("mint");
        assert!(matches!(
            policy.authenticate(Some(&foreign)).await,
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            policy.authenticate(Some("garbage")).await,
            Err(AuthError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn disabled_ignores_tokens() {
        assert_eq!(AuthPolicy::Disabled.authenticate(Some("x")).await, Ok(None));
        assert_eq!(AuthPolicy::Disabled.authenticate(None).await, Ok(None));
    }

    #[test]
    fn one_key_source_at_most_and_claims_need_one() {
        let both = AuthPolicy::new(&AuthSettings {
            secret: Some("s"),
            jwks_url: Some("http://127.0.0.1:9/jwks"),
            ..AuthSettings::default()
        });
        assert!(matches!(both, Err(AuthSetupError::Both)));
        let claims_alone = AuthPolicy::new(&AuthSettings {
            claims: ClaimRules {
                issuer: Some("https://issuer.example".into()),
                audience: None,
            },
            ..AuthSettings::default()
        });
        assert!(matches!(
            claims_alone,
            Err(AuthSetupError::ClaimsWithoutKey)
        ));
    }

    #[test]
    fn bearer_headers() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
    }
}

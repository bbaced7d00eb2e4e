//! Authentication: JSON Web Tokens checked at connection time, before any
//! session exists. Off by default (with a loud warning at startup); on with
//! `--jwt-secret` (HS256) or `--jwt-public-key` (RS256 or ES256, PEM).
//!
//! A token's `sub` is the only uid its connection may register as; an
//! optional `role` claim (`"web"` or `"app"`) restricts the role. `exp` is
//! required.

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
    /// Both a secret and a public key were given.
    #[error("give either --jwt-secret or --jwt-public-key, not both")]
    Both,
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
}

impl fmt::Debug for AuthPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthPolicy::Disabled => f.write_str("AuthPolicy::Disabled"),
            AuthPolicy::Jwt { validation, .. } => f
                .debug_struct("AuthPolicy::Jwt")
                .field("algorithms", &validation.algorithms)
                .finish_non_exhaustive(),
        }
    }
}

fn validation(algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.set_required_spec_claims(&["exp", "sub"]);
    // `nbf`, when present, is checked too (with the same leeway as `exp`).
    validation.validate_nbf = true;
    validation.leeway = 5;
    validation
}

impl AuthPolicy {
    /// The policy for the given secret or public key file (neither: disabled).
    pub fn new(
        secret: Option<&str>,
        public_key_path: Option<&str>,
    ) -> Result<Self, AuthSetupError> {
        match (secret, public_key_path) {
            (None, None) => Ok(AuthPolicy::Disabled),
            (Some(_), Some(_)) => Err(AuthSetupError::Both),
            (Some(secret), None) => Ok(AuthPolicy::Jwt {
                key: Arc::new(DecodingKey::from_secret(secret.as_bytes())),
                validation: Arc::new(validation(Algorithm::HS256)),
            }),
            (None, Some(path)) => {
                let pem = std::fs::read(path).map_err(|source| AuthSetupError::ReadKey {
                    path: path.to_owned(),
                    source,
                })?;
                if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                    Ok(AuthPolicy::Jwt {
                        key: Arc::new(key),
                        validation: Arc::new(validation(Algorithm::RS256)),
                    })
                } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
                    Ok(AuthPolicy::Jwt {
                        key: Arc::new(key),
                        validation: Arc::new(validation(Algorithm::ES256)),
                    })
                } else {
                    Err(AuthSetupError::BadKey)
                }
            }
        }
    }

    /// Whether tokens are required.
    pub fn enabled(&self) -> bool {
        matches!(self, AuthPolicy::Jwt { .. })
    }

    /// Checks the token a connection presented. `Ok(None)` when
    /// authentication is off (a token, if any, is ignored).
    pub fn authenticate(&self, token: Option<&str>) -> Result<Option<Identity>, AuthError> {
        let AuthPolicy::Jwt { key, validation } = self else {
            return Ok(None);
        };
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let data = jsonwebtoken::decode::<Claims>(token, key, validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let claims = data.claims;
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

    #[test]
    fn minted_tokens_verify_and_carry_the_role() {
        let policy = AuthPolicy::new(Some("s3cret"), None).expect("policy");
        let token =
            mint("s3cret", "alice", Some(Role::App), Duration::from_secs(60)).expect("mint");
        let identity = policy
            .authenticate(Some(&token))
            .expect("valid")
            .expect("identity");
        assert_eq!(identity.subject, "alice");
        assert_eq!(identity.role, Some(Role::App));
    }

    #[test]
    fn bad_tokens_are_refused() {
        let policy = AuthPolicy::new(Some("s3cret"), None).expect("policy");
        assert_eq!(policy.authenticate(None), Err(AuthError::Missing));
        let foreign = mint("other", "alice", None, Duration::from_secs(60)).expect("mint");
        assert!(matches!(
            policy.authenticate(Some(&foreign)),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            policy.authenticate(Some("garbage")),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn disabled_ignores_tokens() {
        assert_eq!(AuthPolicy::Disabled.authenticate(Some("x")), Ok(None));
        assert_eq!(AuthPolicy::Disabled.authenticate(None), Ok(None));
    }

    #[test]
    fn bearer_headers() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
    }
}

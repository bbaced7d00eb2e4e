//! ICE servers for a session: the STUN and TURN URLs its peer connection
//! needs, with short-lived TURN credentials minted for its uid by the TURN
//! REST API scheme (draft-uberti-behave-turn-rest), which coturn checks in
//! its `use-auth-secret` mode:
//!
//! - `username = "<expiry unix seconds>:<user>"`, where `user` is the uid
//!   itself when every TURN server takes it, else `hex.` and the uid's
//!   bytes in hex ([`turn_user`]);
//! - `credential = base64(HMAC-SHA1(secret, username))`.
//!
//! One credential covers every TURN URL of the list; STUN URLs carry none.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::command::Uid;

/// A configured ICE server URL that is not `stun:`, `turn:` or `turns:`, or
/// a TTL that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IceConfigError {
    /// The URL's scheme is none of WebRTC's three.
    #[error("ICE server URL {0:?} must start with stun:, stuns:, turn: or turns:")]
    Scheme(String),
    /// Credentials that expire at once would never work.
    #[error("the TURN credential lifetime must be at least one second")]
    ZeroTtl,
    /// Credentials that outlive [`MAX_TURN_TTL`]: a leaked one would be
    /// good for too long, and far enough out the expiry no longer fits the
    /// 32-bit time TURN servers compare it with.
    #[error("the TURN credential lifetime must be at most 7 days (--turn-ttl 168h)")]
    TtlTooLong,
}

/// The longest `--turn-ttl` accepted: 7 days.
pub const MAX_TURN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The ICE servers every session is handed, and how their TURN
/// credentials are minted. Built once from the configuration.
pub struct IcePolicy {
    /// `turn:` and `turns:` URLs, in the configured order.
    turn_urls: Vec<String>,
    /// `stun:` (and `stuns:`) URLs, in the configured order.
    stun_urls: Vec<String>,
    /// coturn's `static-auth-secret`; `None` hands TURN URLs out bare.
    secret: Option<Vec<u8>>,
    /// How long minted credentials are valid.
    ttl: Duration,
}

impl fmt::Debug for IcePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret is never printed.
        f.debug_struct("IcePolicy")
            .field("turn_urls", &self.turn_urls)
            .field("stun_urls", &self.stun_urls)
            .field("minting", &self.secret.is_some())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl IcePolicy {
    /// The policy for `urls`, or `None` when no URL is configured (the
    /// events then carry no ICE fields at all).
    pub fn new(
        urls: &[String],
        secret: Option<&str>,
        ttl: Duration,
    ) -> Result<Option<IcePolicy>, IceConfigError> {
        if ttl < Duration::from_secs(1) {
            return Err(IceConfigError::ZeroTtl);
        }
        if ttl > MAX_TURN_TTL {
            return Err(IceConfigError::TtlTooLong);
        }
        let mut turn_urls = Vec::new();
        let mut stun_urls = Vec::new();
        for url in urls
            .iter()
            .map(|url| url.trim())
            .filter(|url| !url.is_empty())
        {
            let scheme = url.split_once(':').map(|(scheme, _)| scheme);
            match scheme {
                Some("turn" | "turns") => turn_urls.push(url.to_owned()),
                Some("stun" | "stuns") => stun_urls.push(url.to_owned()),
                _ => return Err(IceConfigError::Scheme(url.to_owned())),
            }
        }
        if turn_urls.is_empty() && stun_urls.is_empty() {
            return Ok(None);
        }
        Ok(Some(IcePolicy {
            turn_urls,
            stun_urls,
            secret: secret
                .filter(|s| !s.is_empty())
                .map(|s| s.as_bytes().to_vec()),
            ttl,
        }))
    }

    /// Whether TURN URLs go out without credentials (no secret configured):
    /// a TURN server in secret mode will refuse them.
    pub fn hands_out_bare_turn(&self) -> bool {
        self.secret.is_none() && !self.turn_urls.is_empty()
    }

    /// The list for a session of `uid`, with credentials valid from `now`
    /// for the configured lifetime.
    pub fn grant(&self, uid: &Uid, now: SystemTime) -> IceGrant {
        let mut servers = Vec::with_capacity(2);
        let mut expire_at = None;
        if !self.turn_urls.is_empty() {
            let credentials = self.secret.as_deref().map(|secret| {
                let expiry = now
                    .checked_add(self.ttl)
                    .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |since| since.as_secs());
                expire_at = Some(expiry);
                turn_credentials(secret, expiry, &turn_user(uid.as_str()))
            });
            servers.push(IceServer {
                urls: self.turn_urls.clone(),
                credentials,
            });
        }
        if !self.stun_urls.is_empty() {
            servers.push(IceServer {
                urls: self.stun_urls.clone(),
                credentials: None,
            });
        }
        IceGrant { servers, expire_at }
    }
}

/// The uid as the user part of a TURN username. coturn refuses usernames
/// holding a space, tab, line break, `'`, `"` or `\` (and, as an SQL guard,
/// ones holding both "union" and "select"): a uid made only of letters,
/// digits and `-._~@` goes as it is, any other as `hex.` followed by its
/// UTF-8 bytes in lower-case hex, which every TURN server takes. Either
/// way the credential is the HMAC of the whole username, so the encoding
/// is only a name.
pub fn turn_user(uid: &str) -> std::borrow::Cow<'_, str> {
    let plain = uid
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@'));
    let lower = uid.to_ascii_lowercase();
    let guarded = lower.contains("union") && lower.contains("select");
    if plain && !guarded && !uid.starts_with("hex.") {
        return uid.into();
    }
    let mut encoded = String::with_capacity(4 + uid.len() * 2);
    encoded.push_str("hex.");
    for byte in uid.bytes() {
        encoded.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        encoded.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    encoded.into()
}

/// The TURN REST API credentials for `user`, valid until `expiry` (unix seconds).
pub fn turn_credentials(secret: &[u8], expiry: u64, user: &str) -> TurnCredentials {
    let username = format!("{expiry}:{user}");
    // HMAC accepts a key of any length.
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    TurnCredentials {
        username,
        credential,
    }
}

/// A TURN username and password.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    /// `<expiry unix seconds>:<user>` ([`turn_user`] of the uid).
    pub username: String,
    /// `base64(HMAC-SHA1(secret, username))`.
    pub credential: String,
}

impl fmt::Debug for TurnCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// One entry of the list, WebRTC's `RTCIceServer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceServer {
    /// The URLs this entry covers.
    pub urls: Vec<String>,
    /// The TURN credentials (`None` for STUN, or TURN without a secret).
    pub credentials: Option<TurnCredentials>,
}

/// A session's ICE server list, as handed to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IceGrant {
    /// TURN first (one entry, one credential), then STUN.
    pub servers: Vec<IceServer>,
    /// When the TURN credentials expire (unix seconds); `None` when none
    /// were minted.
    pub expire_at: Option<u64>,
}

impl IceGrant {
    /// The bytes of text the list holds, for the outbox and resume byte
    /// bounds.
    pub fn text_bytes(&self) -> usize {
        self.servers
            .iter()
            .map(|server| {
                server.urls.iter().map(String::len).sum::<usize>()
                    + server
                        .credentials
                        .as_ref()
                        .map_or(0, |c| c.username.len() + c.credential.len())
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<String> {
        list.iter().map(|url| (*url).to_owned()).collect()
    }

    #[test]
    fn credentials_match_a_known_vector() {
        // Computed apart: python3 -c "import hmac, hashlib, base64;
        // print(base64.b64encode(hmac.new(b'north', b'1700086400:alice',
        // hashlib.sha1).digest()).decode())"
        let credentials = turn_credentials(b"north", 1_700_086_400, "alice");
        assert_eq!(credentials.username, "1700086400:alice");
        assert_eq!(credentials.credential, "SXua5ne/+mDhiHTp0pQJzRO4ESg=");
    }

    #[test]
    fn one_credential_covers_every_turn_url_and_stun_carries_none() {
        let policy = IcePolicy::new(
            &urls(&[
                "stun:stun.example.com:3478",
                "turn:turn.example.com:3478?transport=udp",
                "turns:turn.example.com:5349?transport=tcp",
            ]),
            Some("north"),
            Duration::from_secs(86_400),
        )
        .expect("valid")
        .expect("configured");
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let grant = policy.grant(&Uid::new("alice").expect("uid"), now);
        assert_eq!(grant.expire_at, Some(1_700_086_400));
        assert_eq!(
            grant.servers,
            vec![
                IceServer {
                    urls: urls(&[
                        "turn:turn.example.com:3478?transport=udp",
                        "turns:turn.example.com:5349?transport=tcp",
                    ]),
                    credentials: Some(turn_credentials(b"north", 1_700_086_400, "alice")),
                },
                IceServer {
                    urls: urls(&["stun:stun.example.com:3478"]),
                    credentials: None,
                },
            ]
        );
        assert!(!policy.hands_out_bare_turn());
    }

    #[test]
    fn without_a_secret_turn_goes_out_bare_and_nothing_expires() {
        let policy = IcePolicy::new(&urls(&["turn:t:3478"]), None, Duration::from_secs(60))
            .expect("valid")
            .expect("configured");
        let grant = policy.grant(&Uid::new("bob").expect("uid"), SystemTime::now());
        assert_eq!(grant.expire_at, None);
        assert_eq!(grant.servers.len(), 1);
        assert_eq!(grant.servers[0].credentials, None);
        assert!(policy.hands_out_bare_turn());
    }

    #[test]
    fn no_urls_means_no_policy_and_bad_input_is_refused() {
        assert!(
            IcePolicy::new(&[], Some("s"), Duration::from_secs(60))
                .expect("valid")
                .is_none()
        );
        assert_eq!(
            IcePolicy::new(&urls(&["http://x"]), None, Duration::from_secs(60)).err(),
            Some(IceConfigError::Scheme("http://x".into()))
        );
        assert_eq!(
            IcePolicy::new(&urls(&["stun:x"]), None, Duration::ZERO).err(),
            Some(IceConfigError::ZeroTtl)
        );
    }

    #[test]
    fn uids_a_turn_server_refuses_are_hex_encoded() {
        assert_eq!(turn_user("alice"), "alice");
        assert_eq!(turn_user("a.b-c_d~e@f"), "a.b-c_d~e@f");
        assert_eq!(turn_user("a b"), "hex.612062");
        assert_eq!(turn_user("it's"), "hex.69742773");
        assert_eq!(turn_user("\"\\"), "hex.225c");
        assert_eq!(turn_user("x:y"), "hex.783a79");
        assert_eq!(turn_user("Union_SELECT"), "hex.556e696f6e5f53454c454354");
        assert_eq!(turn_user("hex.41"), "hex.6865782e3431");
        assert_eq!(turn_user("ü"), "hex.c3bc");
        let policy = IcePolicy::new(
            &urls(&["turn:t.example"]),
            Some("s"),
            Duration::from_secs(60),
        )
        .expect("valid")
        .expect("some");
        let grant = policy.grant(&Uid::new("a b").expect("uid"), SystemTime::now());
        let credentials = grant.servers[0].credentials.as_ref().expect("minted");
        assert!(
            credentials.username.ends_with(":hex.612062"),
            "{credentials:?}"
        );
    }

    #[test]
    fn a_ttl_over_seven_days_is_refused() {
        let turn = urls(&["turn:t.example"]);
        assert!(IcePolicy::new(&turn, Some("s"), MAX_TURN_TTL).is_ok());
        for ttl in [
            MAX_TURN_TTL + Duration::from_secs(1),
            Duration::from_secs(98_000 * 3600),
            Duration::MAX,
        ] {
            assert_eq!(
                IcePolicy::new(&turn, Some("s"), ttl).err(),
                Some(IceConfigError::TtlTooLong)
            );
        }
    }

    #[test]
    fn the_secret_is_never_printed() {
        let policy = IcePolicy::new(&urls(&["turn:t"]), Some("hunter2"), Duration::from_secs(60))
            .expect("valid")
            .expect("configured");
        assert!(!format!("{policy:?}").contains("hunter2"));
        let grant = policy.grant(&Uid::new("u").expect("uid"), SystemTime::now());
        assert!(
            !format!("{grant:?}").contains(
                &grant.servers[0]
                    .credentials
                    .as_ref()
                    .expect("minted")
                    .credential
            )
        );
    }
}

//! What a client can ask the server to do, independent of the door it uses.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::{Arc, OnceLock};

use super::call_report::CallReport;
use super::error::Rejection;
use super::payload::JsonPayload;
use crate::telemetry::metrics::Label;

/// Longest uid any door decodes, in bytes. The configured limit
/// (`--max-uid-bytes`, default 128) is enforced by the rules at `register`.
pub const MAX_UID_BYTES: usize = 1024;

/// The two sides of a pairing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The browser side (the seed's type 0).
    Web,
    /// The mobile app side (the seed's type 1).
    App,
}

impl Role {
    /// The other side of the pairing.
    pub const fn peer(self) -> Role {
        match self {
            Role::Web => Role::App,
            Role::App => Role::Web,
        }
    }

    /// `"web"` or `"app"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Web => "web",
            Role::App => "app",
        }
    }

    /// Its label in metrics.
    pub const fn label(self) -> Label {
        Label {
            slot: self as usize,
            text: self.as_str(),
        }
    }

    /// Whether this side yields when both sides offer at once (the W3C
    /// "perfect negotiation" pattern; docs/PROTOCOL.md, *Negotiation*): the
    /// web side is polite (it rolls its own offer back), the app side is
    /// impolite (it ignores the colliding offer).
    pub const fn polite(self) -> bool {
        matches!(self, Role::Web)
    }

    /// The seed's numeric type: 0 for web, 1 for app.
    pub const fn seed_type(self) -> u8 {
        match self {
            Role::Web => 0,
            Role::App => 1,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is neither `"web"` nor `"app"`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (use web or app)")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    /// `"web"` or `"app"`: the one place a role is read from its name.
    fn from_str(text: &str) -> Result<Role, UnknownRole> {
        match text {
            "web" => Ok(Role::Web),
            "app" => Ok(Role::App),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// A validated user id: 1 to [`MAX_UID_BYTES`] bytes, no control characters.
///
/// A uid carries a digest of its text, made once when the uid is made with
/// a key chosen at random for the process (SipHash, as `std`'s maps use, so
/// clients cannot pick colliding uids). Maps keyed by uid ([`UidMap`]) and
/// the registry's shards use the digest, so the relay path, which looks up
/// the sender's uid for every event, never hashes the text again.
#[derive(Clone)]
pub struct Uid {
    text: Arc<str>,
    digest: u64,
}

impl Uid {
    /// Validates a uid.
    pub fn new(text: &str) -> Result<Uid, Rejection> {
        if text.is_empty() {
            return Err(Rejection::bad_request("uid must not be empty"));
        }
        if text.len() > MAX_UID_BYTES {
            return Err(Rejection::bad_request(format!(
                "uid must be at most {MAX_UID_BYTES} bytes"
            )));
        }
        if text.chars().any(char::is_control) {
            return Err(Rejection::bad_request(
                "uid must not contain control characters",
            ));
        }
        static DIGEST_KEY: OnceLock<RandomState> = OnceLock::new();
        let digest = DIGEST_KEY.get_or_init(RandomState::new).hash_one(text);
        Ok(Uid {
            text: Arc::from(text),
            digest,
        })
    }

    /// The uid text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Which of `count` shards (at least one) this uid belongs to. Uses
    /// other bits of the digest than a map's bucket index does, so that
    /// the uids of one shard still spread over its map.
    pub fn shard_index(&self, count: usize) -> usize {
        ((self.digest >> 32) as usize) % count.max(1)
    }
}

impl PartialEq for Uid {
    fn eq(&self, other: &Uid) -> bool {
        self.digest == other.digest && self.text == other.text
    }
}

impl Eq for Uid {}

impl Hash for Uid {
    /// Equal uids have equal text, hence equal digests.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.digest);
    }
}

impl PartialOrd for Uid {
    fn partial_cmp(&self, other: &Uid) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Uid {
    /// By text.
    fn cmp(&self, other: &Uid) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Uid").field(&self.text).finish()
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A map keyed by uid that uses the uid's digest as its hash.
pub type UidMap<V> = HashMap<Uid, V, BuildHasherDefault<UidDigestHasher>>;

/// The hasher of [`UidMap`]: passes a uid's digest through. (Anything else
/// hashed with it is folded in FNV-1a style, so it stays a correct hasher.)
#[derive(Default)]
pub struct UidDigestHasher(u64);

impl Hasher for UidDigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, digest: u64) {
        self.0 ^= digest;
    }
}

/// A client-chosen request id (positive). Requests that carry one are
/// answered with `ack` or `error` carrying the same id.
pub type RequestId = u64;

/// A file announcement (`transfile`): only size and name travel, as in the seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileOffer {
    /// File size in bytes.
    pub size: u64,
    /// File name.
    pub name: String,
}

/// Which relayed event this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelayKind {
    /// `syncto` (app → web only).
    SyncTo,
    /// `message`.
    Message,
    /// `export`.
    Export,
    /// `exception`.
    Exception,
    /// `transfile`.
    Transfile,
    /// `ctrlSendSpeed`.
    CtrlSendSpeed,
}

impl RelayKind {
    /// Its label in metrics.
    pub const fn label(self) -> Label {
        Label {
            slot: self as usize,
            text: self.event_name(),
        }
    }

    /// The seed's event name, e.g. `"ctrlSendSpeed"`.
    pub const fn event_name(self) -> &'static str {
        match self {
            RelayKind::SyncTo => "syncto",
            RelayKind::Message => "message",
            RelayKind::Export => "export",
            RelayKind::Exception => "exception",
            RelayKind::Transfile => "transfile",
            RelayKind::CtrlSendSpeed => "ctrlSendSpeed",
        }
    }
}

/// An event relayed to the peer, with its payload.
#[derive(Clone, Debug, PartialEq)]
pub enum Relay {
    /// App → web synchronisation data (any JSON).
    SyncTo(JsonPayload),
    /// Signaling message (any JSON): offers, answers, ICE candidates.
    Message(JsonPayload),
    /// Export data (any JSON).
    Export(JsonPayload),
    /// Exception report (any JSON).
    Exception(JsonPayload),
    /// File announcement.
    Transfile(FileOffer),
    /// Bytes received so far, for the sender's pacing.
    CtrlSendSpeed(u64),
}

impl Relay {
    /// Size of the payload in bytes (for memory accounting; fixed for the
    /// event's life, see [`JsonPayload::held_bytes`]).
    pub fn payload_len(&self) -> usize {
        match self {
            Relay::SyncTo(p) | Relay::Message(p) | Relay::Export(p) | Relay::Exception(p) => {
                p.held_bytes()
            }
            Relay::Transfile(offer) => offer.name.len() + 8,
            Relay::CtrlSendSpeed(_) => 8,
        }
    }

    /// Which relayed event this is.
    pub fn kind(&self) -> RelayKind {
        match self {
            Relay::SyncTo(_) => RelayKind::SyncTo,
            Relay::Message(_) => RelayKind::Message,
            Relay::Export(_) => RelayKind::Export,
            Relay::Exception(_) => RelayKind::Exception,
            Relay::Transfile(_) => RelayKind::Transfile,
            Relay::CtrlSendSpeed(_) => RelayKind::CtrlSendSpeed,
        }
    }
}

/// What a client asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Bind this session to (uid, role).
    Register {
        /// The user id both sides share.
        uid: Uid,
        /// Which side this session is.
        role: Role,
    },
    /// Send an event to the peer.
    Relay(Relay),
    /// Ask for the server's addresses.
    IpAddr,
    /// Ask for a fresh ICE server list (registered sessions only).
    IceServers,
    /// Say how a call attempt ended (registered sessions only; not relayed).
    CallReport(CallReport),
    /// Take over a session whose connection dropped (instead of `register`).
    Resume {
        /// The session's resume token.
        token: String,
        /// The highest sequence number the client received from it.
        last_seq: u64,
    },
}

/// A command with its optional request id.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The request id, when the client wants an `ack`.
    pub id: Option<RequestId>,
    /// What is asked.
    pub command: Command,
    /// Whether `id` was chosen by the client and so identifies the request
    /// across connections: after a resume, a re-sent request with such an
    /// id is recognised and acknowledged without being applied twice. Ids a
    /// door makes up (Socket.IO acknowledgement callbacks) are not.
    pub client_chosen_id: bool,
}

impl Request {
    /// A request whose id (if any) the client chose.
    pub fn new(id: Option<RequestId>, command: Command) -> Self {
        Request {
            id,
            command,
            client_chosen_id: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_made_apart_from_the_same_text_are_one_key() {
        let mut map = UidMap::default();
        for n in 0..1000 {
            map.insert(Uid::new(&format!("user-{n}")).expect("uid"), n);
        }
        assert_eq!(map.len(), 1000);
        for n in 0..1000 {
            let uid = Uid::new(&format!("user-{n}")).expect("uid");
            assert_eq!(map.get(&uid), Some(&n));
            assert!(uid.shard_index(16) < 16);
        }
        assert_eq!(map.get(&Uid::new("user-1000").expect("uid")), None);
        let (a, b) = (Uid::new("a").expect("uid"), Uid::new("b").expect("uid"));
        assert_ne!(a, b);
        assert!(a < b);
        assert_eq!(a, Uid::new("a").expect("uid"));
    }

    #[test]
    fn roles_read_back_their_names_only() {
        for role in [Role::Web, Role::App] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert_eq!("Web".parse::<Role>(), Err(UnknownRole("Web".into())));
        assert!("".parse::<Role>().is_err());
    }

    #[test]
    fn shards_are_all_used() {
        let mut used = [0usize; 16];
        for n in 0..1600 {
            used[Uid::new(&n.to_string()).expect("uid").shard_index(16)] += 1;
        }
        assert!(used.iter().all(|&count| count > 50), "{used:?}");
    }
}

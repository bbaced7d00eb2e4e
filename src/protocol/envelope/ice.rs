//! The JSON shape of ICE server lists, exactly WebRTC's `RTCIceServer[]`
//! (`[{"urls": [...], "username", "credential"}]`), and its expiry, as the
//! JSON doors render them and the cluster reads them back.

use serde::{Deserialize, Serialize, Serializer};

use crate::core::{IceGrant, IceServer, TurnCredentials};

/// `"iceServers"` and `"iceServersExpireAt"`, flattened into an event's
/// data; both absent when there is no list.
#[derive(Clone, Copy, Default, Serialize)]
pub struct IceFields<'a> {
    /// The list.
    #[serde(rename = "iceServers", skip_serializing_if = "Option::is_none")]
    pub ice_servers: Option<IceList<'a>>,
    /// When its TURN credentials expire (unix seconds), when minted.
    #[serde(rename = "iceServersExpireAt", skip_serializing_if = "Option::is_none")]
    pub expire_at: Option<u64>,
}

impl<'a> IceFields<'a> {
    /// The fields of `grant` (none without one).
    pub fn of(grant: Option<&'a IceGrant>) -> IceFields<'a> {
        IceFields {
            ice_servers: grant.map(|grant| IceList(&grant.servers)),
            expire_at: grant.and_then(|grant| grant.expire_at),
        }
    }
}

/// A list rendered as `RTCIceServer[]`.
#[derive(Clone, Copy)]
pub struct IceList<'a>(pub &'a [IceServer]);

impl Serialize for IceList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(IceServerJson::from))
    }
}

/// One `RTCIceServer`.
#[derive(Serialize, Deserialize)]
pub struct IceServerJson {
    /// Its URLs.
    pub urls: Vec<String>,
    /// The TURN username, when minted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The TURN password, when minted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl From<&IceServer> for IceServerJson {
    fn from(server: &IceServer) -> Self {
        IceServerJson {
            urls: server.urls.clone(),
            username: server.credentials.as_ref().map(|c| c.username.clone()),
            credential: server.credentials.as_ref().map(|c| c.credential.clone()),
        }
    }
}

/// A list read back from its JSON shape (a `registered` handed over to
/// another node).
pub fn ice_grant_from_json(servers: Vec<IceServerJson>, expire_at: Option<u64>) -> IceGrant {
    IceGrant {
        servers: servers
            .into_iter()
            .map(|server| IceServer {
                urls: server.urls,
                credentials: match (server.username, server.credential) {
                    (Some(username), Some(credential)) => Some(TurnCredentials {
                        username,
                        credential,
                    }),
                    _ => None,
                },
            })
            .collect(),
        expire_at,
    }
}

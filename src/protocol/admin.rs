//! The admin API's JSON shapes (docs/OPERATIONS.md, *Admin API*), spoken
//! by the HTTP admin surface and carried by the cluster's node frames:
//! sessions, presence, pages, stats, and the bodies of kick and push.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::core::admin::{DoorCounts, NodeStats, SessionInfo, SessionState};
use crate::core::{ClusterStats, DoorKind, ErrorCode, Presence, Rejection, Role, SessionId, Uid};

/// A time as RFC 3339 in UTC with milliseconds.
pub fn rfc3339_millis(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// One session of a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionJson {
    /// Its id.
    pub session: String,
    /// Its uid.
    pub uid: String,
    /// `web` or `app`.
    pub role: String,
    /// `ws`, `grpc`, `socketio`, or null while away.
    pub door: Option<String>,
    /// `online` or `away`.
    pub state: String,
    /// The node holding it.
    pub node: String,
    /// When it entered its state.
    pub since: String,
    /// The client's address, when connected.
    pub remote_addr: Option<String>,
}

impl From<&SessionInfo> for SessionJson {
    fn from(info: &SessionInfo) -> SessionJson {
        SessionJson {
            session: info.session.to_string(),
            uid: info.uid.as_str().to_owned(),
            role: info.role.as_str().to_owned(),
            door: info.door.map(|door| door.as_str().to_owned()),
            state: info.state.as_str().to_owned(),
            node: info.node.to_string(),
            since: rfc3339_millis(info.since),
            remote_addr: info.remote_addr.map(|addr| addr.to_string()),
        }
    }
}

impl TryFrom<SessionJson> for SessionInfo {
    type Error = String;

    fn try_from(json: SessionJson) -> Result<SessionInfo, String> {
        Ok(SessionInfo {
            session: SessionId::parse(&json.session).ok_or("bad session id")?,
            uid: Uid::new(&json.uid).map_err(|e| e.to_string())?,
            role: json.role.parse().map_err(|_| "bad role")?,
            door: match json.door.as_deref() {
                None => None,
                Some(door) => Some(
                    DoorKind::ALL
                        .into_iter()
                        .find(|kind| kind.as_str() == door)
                        .ok_or("bad door")?,
                ),
            },
            state: SessionState::parse(&json.state).ok_or("bad state")?,
            node: Arc::from(json.node),
            since: humantime::parse_rfc3339(&json.since).map_err(|e| e.to_string())?,
            remote_addr: json.remote_addr.and_then(|addr| addr.parse().ok()),
        })
    }
}

/// One role of a presence answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RolePresenceJson {
    /// `online`, `away` or `absent`.
    pub state: &'static str,
    /// The door, when online.
    pub door: Option<&'static str>,
    /// The node, unless absent.
    pub node: Option<String>,
    /// When it entered its state, unless absent.
    pub since: Option<String>,
    /// The session id, unless absent.
    pub session: Option<String>,
}

impl RolePresenceJson {
    fn of(info: Option<&SessionInfo>) -> RolePresenceJson {
        match info {
            None => RolePresenceJson {
                state: "absent",
                door: None,
                node: None,
                since: None,
                session: None,
            },
            Some(info) => RolePresenceJson {
                state: info.state.as_str(),
                door: info.door.map(DoorKind::as_str),
                node: Some(info.node.to_string()),
                since: Some(rfc3339_millis(info.since)),
                session: Some(info.session.to_string()),
            },
        }
    }
}

/// `GET /admin/v1/presence/{uid}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PresenceJson {
    /// The uid asked about.
    pub uid: String,
    /// Whether both roles are held.
    pub paired: bool,
    /// The `web` role.
    pub web: RolePresenceJson,
    /// The `app` role.
    pub app: RolePresenceJson,
}

impl From<&Presence> for PresenceJson {
    fn from(presence: &Presence) -> PresenceJson {
        PresenceJson {
            uid: presence.uid.as_str().to_owned(),
            paired: presence.paired(),
            web: RolePresenceJson::of(presence.web.as_ref()),
            app: RolePresenceJson::of(presence.app.as_ref()),
        }
    }
}

/// `GET /admin/v1/sessions`.
#[derive(Clone, Debug, Serialize)]
pub struct SessionsPageJson {
    /// The page.
    pub sessions: Vec<SessionJson>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<String>,
}

/// The opaque cursor of a listing: (uid, role), base64url.
pub fn encode_cursor((uid, role): &(Uid, Role)) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", role.as_str(), uid.as_str()))
}

/// Reads a cursor made by [`encode_cursor`].
pub fn decode_cursor(text: &str) -> Result<(Uid, Role), Rejection> {
    let bad = || Rejection::bad_request("cursor is not one this API returned");
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (role, uid) = text.split_once(':').ok_or_else(bad)?;
    Ok((
        Uid::new(uid).map_err(|_| bad())?,
        role.parse().map_err(|_| bad())?,
    ))
}

/// Sessions by door.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoorCountsJson {
    /// JSON WebSocket.
    pub ws: usize,
    /// gRPC.
    pub grpc: usize,
    /// Socket.IO.
    pub socketio: usize,
}

impl From<DoorCounts> for DoorCountsJson {
    fn from(counts: DoorCounts) -> DoorCountsJson {
        DoorCountsJson {
            ws: counts.ws,
            grpc: counts.grpc,
            socketio: counts.socketio,
        }
    }
}

/// One node's stats.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeStatsJson {
    /// The node's name.
    pub node: String,
    /// `up`, or `unreachable` when the node did not answer (its figures
    /// are then zero).
    pub health: String,
    /// Connected sessions by door.
    pub sessions: DoorCountsJson,
    /// Sessions away.
    pub away: usize,
    /// Pairs whose two sessions are both on this node.
    pub pairs: usize,
    /// Relays per second over the last second.
    pub relays_per_s: f64,
    /// Errors sent per second over the last second, by code.
    pub errors_per_s: BTreeMap<String, f64>,
    /// Seconds since the node started.
    pub uptime_s: u64,
}

impl From<&NodeStats> for NodeStatsJson {
    fn from(stats: &NodeStats) -> NodeStatsJson {
        NodeStatsJson {
            node: stats.node.to_string(),
            health: "up".to_owned(),
            sessions: stats.sessions.into(),
            away: stats.away,
            pairs: stats.pairs,
            relays_per_s: stats.relays_per_s,
            errors_per_s: stats
                .errors_per_s
                .iter()
                .map(|(code, rate)| (code.as_str().to_owned(), *rate))
                .collect(),
            uptime_s: stats.uptime_s,
        }
    }
}

impl TryFrom<NodeStatsJson> for NodeStats {
    type Error = String;

    fn try_from(json: NodeStatsJson) -> Result<NodeStats, String> {
        Ok(NodeStats {
            node: Arc::from(json.node),
            sessions: DoorCounts {
                ws: json.sessions.ws,
                grpc: json.sessions.grpc,
                socketio: json.sessions.socketio,
            },
            away: json.away,
            pairs: json.pairs,
            relays_per_s: json.relays_per_s,
            errors_per_s: json
                .errors_per_s
                .into_iter()
                .map(|(code, rate)| Ok((ErrorCode::parse(&code).ok_or("bad code")?, rate)))
                .collect::<Result<_, String>>()?,
            uptime_s: json.uptime_s,
        })
    }
}

/// The sums over the nodes that answered.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TotalsJson {
    /// Nodes that answered.
    pub nodes_up: usize,
    /// Nodes that did not.
    pub nodes_unreachable: usize,
    /// Connected sessions by door.
    pub sessions: DoorCountsJson,
    /// Sessions away.
    pub away: usize,
    /// Pairs held within a node.
    pub pairs: usize,
    /// Relays per second.
    pub relays_per_s: f64,
    /// Errors per second by code.
    pub errors_per_s: BTreeMap<String, f64>,
}

/// `GET /admin/v1/stats`.
#[derive(Clone, Debug, Serialize)]
pub struct StatsJson {
    /// Every live node, the one asked first.
    pub nodes: Vec<NodeStatsJson>,
    /// Sums.
    pub totals: TotalsJson,
}

impl From<&ClusterStats> for StatsJson {
    fn from(stats: &ClusterStats) -> StatsJson {
        let mut totals = TotalsJson::default();
        let nodes = stats
            .nodes
            .iter()
            .map(|(node, stats)| match stats {
                Some(stats) => {
                    totals.nodes_up += 1;
                    totals.sessions.ws += stats.sessions.ws;
                    totals.sessions.grpc += stats.sessions.grpc;
                    totals.sessions.socketio += stats.sessions.socketio;
                    totals.away += stats.away;
                    totals.pairs += stats.pairs;
                    totals.relays_per_s += stats.relays_per_s;
                    for (code, rate) in &stats.errors_per_s {
                        *totals
                            .errors_per_s
                            .entry(code.as_str().to_owned())
                            .or_default() += rate;
                    }
                    NodeStatsJson::from(stats)
                }
                None => {
                    totals.nodes_unreachable += 1;
                    NodeStatsJson {
                        node: node.to_string(),
                        health: "unreachable".to_owned(),
                        sessions: DoorCountsJson::default(),
                        away: 0,
                        pairs: 0,
                        relays_per_s: 0.0,
                        errors_per_s: BTreeMap::new(),
                        uptime_s: 0,
                    }
                }
            })
            .collect();
        StatsJson { nodes, totals }
    }
}

/// `POST /admin/v1/kick`.
#[derive(Clone, Debug, Deserialize)]
pub struct KickRequest {
    /// The uid.
    pub uid: String,
    /// `web`, `app`, or null/absent for both.
    #[serde(default)]
    pub role: Option<String>,
    /// Why: sent to the client in its `error`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /admin/v1/push`.
#[derive(Clone, Debug, Deserialize)]
pub struct PushRequest {
    /// The uid.
    pub uid: String,
    /// `web` or `app`.
    pub role: String,
    /// Any JSON, passed to the session as the `notice`'s data.
    pub data: Box<RawValue>,
}

/// Milliseconds since the Unix epoch (the gRPC surface's times).
pub fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

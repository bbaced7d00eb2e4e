//! The admin API as gRPC: `signalgate.admin.v1.Admin`, the same calls as
//! the HTTP surface with the same rules (`super`), mapped to statuses in
//! one place (`status`).

use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use tonic::{Request, Response, Status};

use super::Failure;
use crate::core::admin::{PushOutcome, SessionInfo};
use crate::core::{ClusterStats, Hub, JsonPayload, Presence, Rejection};
use crate::proto::admin as pb;
use crate::proto::admin::admin_server::{Admin, AdminServer};
use crate::proto::json::value_to_json;
use crate::protocol::admin::{StatsJson, encode_cursor, unix_millis};
use crate::protocol::admin_calls::CallsJson;

/// Shortest interval `WatchStats` accepts.
const MIN_WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// The tonic service over `hub`.
pub(super) fn service(hub: Hub, max_message_bytes: usize) -> AdminServer<AdminService> {
    AdminServer::new(AdminService {
        hub,
        max_message_bytes,
    })
    .max_decoding_message_size(max_message_bytes.saturating_mul(2))
}

/// The admin API's gRPC implementation.
#[derive(Clone, Debug)]
pub struct AdminService {
    hub: Hub,
    max_message_bytes: usize,
}

/// The one mapping of the admin API's failures to gRPC statuses.
fn status(failure: impl Into<Failure>) -> Status {
    match failure.into() {
        Failure::Refused(rejection) => {
            let code = if super::refused_as_too_large(rejection.code) {
                tonic::Code::ResourceExhausted
            } else {
                tonic::Code::InvalidArgument
            };
            Status::new(code, format!("{}: {}", rejection.code, rejection.message))
        }
        Failure::Registry(error) => Status::unavailable(format!("UNAVAILABLE: {error}")),
        Failure::NoSession => Status::not_found("NO_SESSION: no session holds that uid and role"),
    }
}

fn door_counts(counts: crate::protocol::admin::DoorCountsJson) -> pb::DoorCounts {
    pb::DoorCounts {
        ws: counts.ws as u64,
        grpc: counts.grpc as u64,
        socketio: counts.socketio as u64,
    }
}

fn session_info(info: &SessionInfo) -> pb::SessionInfo {
    pb::SessionInfo {
        session: info.session.to_string(),
        uid: info.uid.as_str().to_owned(),
        role: info.role.as_str().to_owned(),
        door: info
            .door
            .map(|door| door.as_str())
            .unwrap_or_default()
            .to_owned(),
        state: info.state.as_str().to_owned(),
        node: info.node.to_string(),
        since_ms: unix_millis(info.since),
        remote_addr: info
            .remote_addr
            .map(|addr| addr.to_string())
            .unwrap_or_default(),
    }
}

fn role_presence(info: Option<&SessionInfo>) -> pb::RolePresence {
    match info {
        None => pb::RolePresence {
            state: "absent".to_owned(),
            ..pb::RolePresence::default()
        },
        Some(info) => pb::RolePresence {
            state: info.state.as_str().to_owned(),
            door: info
                .door
                .map(|door| door.as_str())
                .unwrap_or_default()
                .to_owned(),
            node: info.node.to_string(),
            since_ms: unix_millis(info.since),
            session: info.session.to_string(),
        },
    }
}

fn presence(presence: &Presence) -> pb::Presence {
    pb::Presence {
        uid: presence.uid.as_str().to_owned(),
        paired: presence.paired(),
        web: Some(role_presence(presence.web.as_ref())),
        app: Some(role_presence(presence.app.as_ref())),
    }
}

/// The stats, through the same sums as the HTTP surface.
fn stats(stats: &ClusterStats) -> pb::Stats {
    let json = StatsJson::from(stats);
    pb::Stats {
        nodes: json
            .nodes
            .into_iter()
            .map(|node| pb::NodeStats {
                node: node.node,
                health: node.health,
                sessions: Some(door_counts(node.sessions)),
                away: node.away as u64,
                pairs: node.pairs as u64,
                relays_per_s: node.relays_per_s,
                errors_per_s: node.errors_per_s.into_iter().collect(),
                uptime_s: node.uptime_s,
            })
            .collect(),
        totals: Some(pb::Totals {
            nodes_up: u32::try_from(json.totals.nodes_up).unwrap_or(u32::MAX),
            nodes_unreachable: u32::try_from(json.totals.nodes_unreachable).unwrap_or(u32::MAX),
            sessions: Some(door_counts(json.totals.sessions)),
            away: json.totals.away as u64,
            pairs: json.totals.pairs as u64,
            relays_per_s: json.totals.relays_per_s,
            errors_per_s: json.totals.errors_per_s.into_iter().collect(),
        }),
    }
}

/// The stream of `WatchStats`.
type StatsStream = Pin<Box<dyn Stream<Item = Result<pb::Stats, Status>> + Send>>;

#[tonic::async_trait]
impl Admin for AdminService {
    async fn get_presence(
        &self,
        request: Request<pb::GetPresenceRequest>,
    ) -> Result<Response<pb::Presence>, Status> {
        let uid = super::parse_uid(&request.into_inner().uid).map_err(status)?;
        let found = self.hub.presence(uid).await.map_err(status)?;
        Ok(Response::new(presence(&found)))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let request = request.into_inner();
        let limit = (request.limit != 0).then_some(request.limit as usize);
        let filter = super::session_filter(request.uid_prefix, limit, Some(&request.cursor))
            .map_err(status)?;
        let page = self.hub.list_sessions(filter).await.map_err(status)?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: page.sessions.iter().map(session_info).collect(),
            next_cursor: page
                .next_cursor
                .as_ref()
                .map(encode_cursor)
                .unwrap_or_default(),
        }))
    }

    async fn kick(
        &self,
        request: Request<pb::KickRequest>,
    ) -> Result<Response<pb::KickResponse>, Status> {
        let request = request.into_inner();
        let uid = super::parse_uid(&request.uid).map_err(status)?;
        let role = match request.role.as_str() {
            "" => None,
            role => Some(super::parse_role(role).map_err(status)?),
        };
        let reason = super::kick_reason(Some(&request.reason)).map_err(status)?;
        let kicked = self.hub.kick(uid, role, reason).await.map_err(status)?;
        Ok(Response::new(pb::KickResponse {
            kicked: u32::try_from(kicked).unwrap_or(u32::MAX),
        }))
    }

    async fn push(
        &self,
        request: Request<pb::PushRequest>,
    ) -> Result<Response<pb::PushResponse>, Status> {
        let request = request.into_inner();
        let uid = super::parse_uid(&request.uid).map_err(status)?;
        let role = super::parse_role(&request.role).map_err(status)?;
        let data = request
            .data
            .ok_or_else(|| Rejection::bad_request("data is required"))
            .and_then(|value| {
                value_to_json(&value).map_err(|e| Rejection::bad_request(e.to_string()))
            })
            .and_then(|json| JsonPayload::from_value(&json))
            .and_then(|data| super::push_payload(data, self.max_message_bytes))
            .map_err(status)?;
        match self.hub.push(uid, role, data).await.map_err(status)? {
            PushOutcome::Delivered => Ok(Response::new(pb::PushResponse {
                delivered: true,
                held: false,
            })),
            PushOutcome::Held => Ok(Response::new(pb::PushResponse {
                delivered: false,
                held: true,
            })),
            PushOutcome::NoSession => Err(status(Failure::NoSession)),
        }
    }

    async fn get_stats(
        &self,
        _request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::Stats>, Status> {
        let found = self.hub.stats().await.map_err(status)?;
        Ok(Response::new(stats(&found)))
    }

    async fn get_calls(
        &self,
        request: Request<pb::GetCallsRequest>,
    ) -> Result<Response<pb::Calls>, Status> {
        let window = super::calls_window(Some(&request.into_inner().window)).map_err(status)?;
        let (summary, silent) = self.hub.calls(window).await.map_err(status)?;
        Ok(Response::new(calls(CallsJson::new(
            &summary, window, &silent,
        ))))
    }

    type WatchStatsStream = StatsStream;

    async fn watch_stats(
        &self,
        request: Request<pb::WatchStatsRequest>,
    ) -> Result<Response<StatsStream>, Status> {
        let interval = match request.into_inner().interval_ms {
            0 => Duration::from_secs(1),
            ms => Duration::from_millis(u64::from(ms)).max(MIN_WATCH_INTERVAL),
        };
        let hub = self.hub.clone();
        let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(interval));
        // The stream ends when the gateway shuts down.
        let until = {
            let hub = hub.clone();
            Box::pin(async move { hub.shutting_down().await })
        };
        let stream = futures_util::StreamExt::then(ticks, move |_| {
            let hub = hub.clone();
            async move { hub.stats().await.map(|found| stats(&found)).map_err(status) }
        });
        let stream = futures_util::StreamExt::take_until(stream, until);
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The calls summary as gRPC says it, from the HTTP answer's shape (one
/// rendering of the summary for both surfaces).
fn calls(json: CallsJson) -> pb::Calls {
    pb::Calls {
        window_s: json.window_s,
        total: json.total as u64,
        connected: json.connected as u64,
        failed: json.failed as u64,
        relay_share: json.relay_share,
        setup_ms_p50: json.setup_ms.p50,
        setup_ms_p95: json.setup_ms.p95,
        by_door_pair: json
            .by_door_pair
            .into_iter()
            .map(|(pair, counts)| {
                (
                    pair,
                    pb::PairCounts {
                        total: counts.total as u64,
                        connected: counts.connected as u64,
                        failed: counts.failed as u64,
                    },
                )
            })
            .collect(),
        recent_failures: json
            .recent_failures
            .into_iter()
            .map(|failure| pb::CallFailure {
                uid: failure.uid,
                call: failure.call,
                reason: failure.reason.unwrap_or_default(),
                at: failure.at,
            })
            .collect(),
        unreachable_nodes: json.unreachable_nodes,
    }
}

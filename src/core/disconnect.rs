//! How the server ends a session with each [`ErrorCode`], described once:
//! the farewell's text, whether queued events are written first, the
//! disconnect's metric label, the WebSocket close code and the gRPC status.
//! Every door and the core read this one exhaustive table, so a new code
//! does not compile until its row is written (and `tests` check it against
//! docs/PROTOCOL.md's close-code table).
//!
//! The wire values are plain numbers and a gRPC status of the core's own
//! ([`GrpcStatus`]): the core imports no door's types; the gRPC door maps
//! [`GrpcStatus`] onto tonic's codes one to one.

use super::error::ErrorCode;

/// The gRPC status a stream ends with (the codes of the gRPC spec that a
/// server-side close uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcStatus {
    /// `INVALID_ARGUMENT`.
    InvalidArgument,
    /// `DEADLINE_EXCEEDED`.
    DeadlineExceeded,
    /// `PERMISSION_DENIED`.
    PermissionDenied,
    /// `RESOURCE_EXHAUSTED`.
    ResourceExhausted,
    /// `ABORTED`.
    Aborted,
    /// `INTERNAL`.
    Internal,
    /// `UNAVAILABLE`.
    Unavailable,
}

/// What closing a session with one code means on every door.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disconnect {
    /// The message of the last `error` event (an operator's kick reason
    /// replaces it).
    pub farewell: &'static str,
    /// Whether the events already queued for the session are written
    /// before the farewell: yes for most (a rate-limited client sees the
    /// refusals of its requests); not for `SLOW_CONSUMER` (the queue is
    /// what it cannot take) nor `SHUTTING_DOWN` (every session closes at
    /// once; the farewell first).
    pub flushes_queue: bool,
    /// The `reason` label of `signalgate_disconnects_total` (and of the
    /// `pair.ended` / `session.ended` webhooks).
    pub end_label: &'static str,
    /// The WebSocket close code (docs/PROTOCOL.md, *WebSocket close codes*).
    pub ws_close: u16,
    /// The gRPC status the stream ends with (docs/PROTOCOL.md, *gRPC
    /// statuses*).
    pub grpc_status: GrpcStatus,
}

/// The WebSocket close codes (docs/PROTOCOL.md): the table's, and those of
/// the protocol violations the WebSocket door closes with itself.
pub mod ws_close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Server shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame that breaks the WebSocket protocol (RFC 6455).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A binary frame on the JSON door.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A text frame that is not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A message over the size limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// An unexpected server error.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// Replaced by a newer session.
    pub const REPLACED: u16 = 4001;
    /// The session could not keep up.
    pub const SLOW_CONSUMER: u16 = 4002;
    /// Rate limit exceeded persistently.
    pub const RATE_LIMITED: u16 = 4003;
    /// The session did not register in time.
    pub const REGISTER_TIMEOUT: u16 = 4004;
    /// Closed by an operator.
    pub const KICKED: u16 = 4005;
    /// The node drains: resume on another node.
    pub const RECONNECT: u16 = 4006;
}

/// The generic farewell of codes a session is never closed with.
const CLOSED: &str = "the session was closed";

impl ErrorCode {
    /// How the server ends a session with this code.
    pub const fn disconnect(self) -> Disconnect {
        use GrpcStatus as G;
        let (farewell, flushes_queue, end_label, ws_close, grpc_status) = match self {
            ErrorCode::Replaced => (
                "a newer session registered the same uid and role",
                true,
                "replaced",
                ws_close::REPLACED,
                G::Aborted,
            ),
            ErrorCode::SlowConsumer => (
                "the session could not keep up with its events",
                false,
                "slow_consumer",
                ws_close::SLOW_CONSUMER,
                G::ResourceExhausted,
            ),
            ErrorCode::ShuttingDown => (
                "the server is shutting down",
                false,
                "shutdown",
                ws_close::GOING_AWAY,
                G::Unavailable,
            ),
            ErrorCode::MessageTooLarge => (
                "message exceeds the size limit",
                true,
                "closed",
                ws_close::MESSAGE_TOO_BIG,
                G::ResourceExhausted,
            ),
            ErrorCode::RateLimited => (
                "the session kept sending faster than allowed",
                true,
                "rate_limited",
                ws_close::RATE_LIMITED,
                G::ResourceExhausted,
            ),
            ErrorCode::RegisterTimeout => (
                "the session did not register in time",
                true,
                "register_timeout",
                ws_close::REGISTER_TIMEOUT,
                G::DeadlineExceeded,
            ),
            ErrorCode::Kicked => (
                "an operator closed the session",
                true,
                "kicked",
                ws_close::KICKED,
                G::PermissionDenied,
            ),
            ErrorCode::Draining => (
                CLOSED,
                true,
                "draining",
                ws_close::RECONNECT,
                G::Unavailable,
            ),
            ErrorCode::BadRequest => (
                CLOSED,
                true,
                "closed",
                ws_close::INTERNAL_ERROR,
                G::InvalidArgument,
            ),
            // Codes that answer a request and never close a session: should
            // one ever do, it is an internal error.
            ErrorCode::NotRegistered
            | ErrorCode::AlreadyRegistered
            | ErrorCode::NoPeer
            | ErrorCode::Unauthenticated
            | ErrorCode::Forbidden
            | ErrorCode::WrongRole
            | ErrorCode::ResumeFailed
            | ErrorCode::Internal
            | ErrorCode::Unavailable => (
                CLOSED,
                true,
                "closed",
                ws_close::INTERNAL_ERROR,
                G::Internal,
            ),
        };
        Disconnect {
            farewell,
            flushes_queue,
            end_label,
            ws_close,
            grpc_status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/PROTOCOL.md's close-code table says which `error` (or
    /// `reconnect`) comes before each close code; the table here agrees.
    #[test]
    fn the_protocol_close_code_table_matches() {
        let spec = include_str!("../../docs/PROTOCOL.md");
        let section = spec
            .split("### WebSocket close codes")
            .nth(1)
            .and_then(|rest| rest.split("\n### ").next())
            .expect("the close-code section");
        let mut checked = 0;
        for row in section.lines().filter(|line| line.starts_with("| ")) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let Ok(close) = cells[1].parse::<u16>() else {
                continue;
            };
            let code = if cells[2].contains("(after `reconnect`)") {
                Some(ErrorCode::Draining)
            } else {
                cells[2]
                    .split("(after `error ")
                    .nth(1)
                    .and_then(|rest| rest.split('`').next())
                    .and_then(ErrorCode::parse)
            };
            // Protocol violations (1002, 1003, 1007) close with the kind of
            // violation, not with their `BAD_REQUEST`.
            let Some(code) = code.filter(|code| *code != ErrorCode::BadRequest) else {
                continue;
            };
            assert_eq!(code.disconnect().ws_close, close, "{row}");
            checked += 1;
        }
        assert_eq!(checked, 8, "rows checked in:\n{section}");
    }

    /// docs/PROTOCOL.md's gRPC status table names the codes each status
    /// ends a stream for; the table here agrees.
    #[test]
    fn the_protocol_grpc_status_table_matches() {
        let spec = include_str!("../../docs/PROTOCOL.md");
        let section = spec
            .split("### gRPC statuses")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("the gRPC status section");
        let mut checked = 0;
        for row in section.lines().filter(|line| line.starts_with("| `")) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let status = match cells[1].trim_matches('`') {
                "ABORTED" => GrpcStatus::Aborted,
                "RESOURCE_EXHAUSTED" => GrpcStatus::ResourceExhausted,
                "DEADLINE_EXCEEDED" => GrpcStatus::DeadlineExceeded,
                "PERMISSION_DENIED" => GrpcStatus::PermissionDenied,
                "UNAVAILABLE" => GrpcStatus::Unavailable,
                // Statuses the door returns itself (a refused token, tonic's
                // decode limit, broken framing), not a close by code.
                _ => continue,
            };
            // The codes the row starts with: `A`, `B` ...
            for code in cells[2]
                .split(", ")
                .map_while(|item| item.split('`').nth(1).and_then(ErrorCode::parse))
            {
                assert_eq!(code.disconnect().grpc_status, status, "{row}");
                checked += 1;
            }
        }
        assert_eq!(checked, 6, "codes checked in:\n{section}");
    }
}

//! The protocol-neutral core: every rule of the seed's semantics lives here,
//! once. Nothing in this module knows about tonic, axum, Socket.IO or the
//! generated protobuf types; the doors translate their wire formats into
//! [`Request`]s and render [`Event`]s back.
//!
//! - [`command`]: what a client can ask for.
//! - [`event`]: what the server can say to a session.
//! - [`error`]: error codes and the reasons a session ends.
//! - [`ids`]: session and door ids.
//! - [`ice`]: ICE servers and the TURN credentials minted for a session.
//! - [`identity`]: who an authenticated connection is and what it may register as.
//! - [`limits`]: per-session rate limiting.
//! - [`json_text`]: a one-pass validating scanner for JSON text.
//! - [`payload`]: relayed JSON kept as text, validated once.
//! - [`session`]: a session's state: sequence numbers, resume buffer, attachment.
//! - [`registry`]: the pairing registry interface and its in-memory implementation.
//! - [`hub`]: register / replace / relay / resume / disconnect, the only place the rules live.

pub mod admin;
pub mod call_report;
pub mod call_stats;
pub mod command;
pub mod disconnect;
pub mod error;
pub mod event;
pub mod handover;
pub mod hooks;
pub mod hub;
pub mod ice;
pub mod identity;
pub mod ids;
pub mod json_text;
mod kill;
pub mod limits;
pub mod payload;
pub mod registry;
pub mod session;

pub use call_report::{CallPath, CallReport, CallReportFields, CallResult, Millis};
pub use command::{
    Command, FileOffer, Relay, RelayKind, Request, RequestId, Role, Uid, UidDigestHasher, UidMap,
    UnknownRole,
};
pub use disconnect::{Disconnect, GrpcStatus};
pub use error::{EndReason, ErrorCode, Rejection};
pub use event::Event;
pub use handover::{SessionExport, SessionExporter};
pub use hub::{Census, ClusterStats, Hub, HubConfig, Presence, Session, SessionPage};
pub use ice::{IceConfigError, IceGrant, IcePolicy, IceServer, TurnCredentials};
pub use identity::Identity;
pub use limits::RateLimit;
pub use payload::{JsonPayload, NativePayload};
pub use registry::{
    Bound, InMemoryRegistry, NodeLink, Peer, Registry, RegistryCensus, RegistryError,
    RemoteSession, RouteError,
};
pub use session::{
    Delivery, DeliveryError, DoorKind, LastWords, Opening, ResumeLimits, SessionHandle, SessionId,
    SessionLink,
};

//! The Lua scripts that make each registry operation atomic in Redis.
//!
//! Keys (prefix `P`, default `signalgate`):
//! - `P:uid:<uid>`: hash; fields `web` and `app` hold `<node>/<session>`,
//!   `web:away` / `app:away` are set while that session is away, `epoch`
//!   counts bindings (orders registrations that race on one node).
//! - `P:node:<node>:sessions`: set of `<role>:<session>:<uid>`, one member
//!   per binding the node made: the index a reaper walks when the node
//!   dies. It is a superset of the node's bindings (a member is added before
//!   its binding is written and removed after it is freed), so a reaper
//!   frees a member's binding only if the uid hash still names that very
//!   session.
//! - `P:node:<node>:alive`: the node's heartbeat, with a TTL.
//! - `P:nodes`: set of node ids that may hold bindings.
//!
//! Channel `P:node:<node>`: frames for the node's sessions (see `bus`).
//!
//! Every script touches exactly one key, the uid hash, so each runs on one
//! hash slot of a Redis Cluster as on a single Redis. The frames a script
//! publishes itself (a `kill` for a replaced session, the `byebye` of a
//! reaped one) go out with `PUBLISH`, which a Redis Cluster delivers on
//! every shard; the node's other frames use sharded pub/sub there.
//!
//! Each script is a `.lua` file beside this one, compiled in with
//! `include_str!`.

use std::sync::LazyLock;

use redis::Script;

use super::Inner;
use crate::core::{RegistryError, Role, Uid};

/// Binds (uid, role) to a session. KEYS: uid hash. ARGV: role, peer
/// role, `<node>/<session>`, own node, prefix, uid.
/// Returns `{previous holder or "", peer or "", epoch, peer away (0/1),
/// previous holder away (0/1)}`; a previous holder on another node is sent
/// a `kill` (REPLACED) frame.
pub(crate) static BIND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("bind.lua")));

/// Frees (uid, role) if the session still holds it. KEYS: uid hash. ARGV:
/// role, peer role, `<node>/<session>`.
/// Returns `{status, peer or ""}`: 1 freed, 0 held by another session (the
/// caller was replaced: nobody to tell), 2 not held at all (Redis lost it).
pub(crate) static UNBIND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("unbind.lua")));

/// Re-asserts a binding after Redis came back. KEYS: uid hash. ARGV: role,
/// peer role, `<node>/<session>`, the binding's epoch (the counter never
/// goes back, so later binds still order after it even if Redis came back
/// empty).
/// Returns `{1, peer or ""}` when the session holds (uid, role) again, or
/// `{0, holder}` when another session took it meanwhile.
pub(crate) static REBIND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("rebind.lua")));

/// Frees (uid, role) if exactly `<node>/<session>` still holds it: a
/// binding of a dead node (reaping) or one no local session holds any more.
/// KEYS: uid hash. ARGV: role, peer role, `<node>/<session>`, prefix (or ""
/// to publish nothing), uid. With a prefix, the peer is sent `byebye` on
/// its node's channel. Returns `{1, peer or ""}` when freed, `{0, ""}` when
/// the binding is not that session's.
pub(crate) static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("release.lua")));

/// Marks the session holding a role away (ARGV[3] = 1) or back (0), if it
/// still holds it. KEYS: uid hash. ARGV: role, `<node>/<session>`, flag.
pub(crate) static SET_AWAY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("set_away.lua")));

/// Moves a binding to another node with its session (a resume handed the
/// session over). KEYS: uid hash. ARGV: role, expected holder
/// `<old node>/<session>`, new holder. Returns `{1, epoch}` when moved,
/// `{0, 0}` when a newer registration took the role meanwhile.
pub(crate) static MIGRATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("migrate.lua")));

// One typed function per script whose call was written more than once.
impl Inner {
    /// [`RELEASE`]: frees (uid, role) if exactly `holder` still holds it;
    /// with `tell_peer`, the script sends the peer `byebye` on its node's
    /// channel. Returns the peer's holder (`""` when none) when freed,
    /// `None` when the binding was not `holder`'s.
    pub(super) async fn release(
        &self,
        uid: &Uid,
        role: Role,
        holder: &str,
        tell_peer: bool,
    ) -> Result<Option<String>, RegistryError> {
        let mut connection = self.connection();
        let prefix = if tell_peer {
            self.keys.prefix.as_str()
        } else {
            ""
        };
        let (status, peer): (i64, String) = self
            .call(
                RELEASE
                    .key(self.keys.uid(uid))
                    .arg(role.as_str())
                    .arg(role.peer().as_str())
                    .arg(holder)
                    .arg(prefix)
                    .arg(uid.as_str())
                    .invoke_async(&mut connection),
            )
            .await?;
        Ok((status == 1).then_some(peer))
    }

    /// [`REBIND`]: re-asserts `holder`'s binding of (uid, role) at `epoch`.
    /// `Err(other holder)` when another session took it meanwhile.
    pub(super) async fn rebind(
        &self,
        uid: &Uid,
        role: Role,
        holder: &str,
        epoch: u64,
    ) -> Result<Result<(), String>, RegistryError> {
        let mut connection = self.connection();
        let (status, other): (i64, String) = self
            .call(
                REBIND
                    .key(self.keys.uid(uid))
                    .arg(role.as_str())
                    .arg(role.peer().as_str())
                    .arg(holder)
                    .arg(epoch)
                    .invoke_async(&mut connection),
            )
            .await?;
        Ok(if status == 1 { Ok(()) } else { Err(other) })
    }
}

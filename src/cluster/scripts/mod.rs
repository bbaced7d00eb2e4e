//! The Lua scripts that make each registry operation atomic in Redis.
//!
//! Keys (prefix `P`, default `signalgate`):
//! - `P:uid:<uid>`: hash; fields `web` and `app` hold `<node>/<session>`,
//!   `web:away` / `app:away` are set while that session is away, `epoch`
//!   counts bindings (orders registrations that race on one node).
//! - `P:node:<node>:bindings`: set of `<role>:<uid>` the node holds.
//! - `P:node:<node>:alive`: the node's heartbeat, with a TTL.
//! - `P:nodes`: set of node ids that may hold bindings.
//!
//! Channel `P:node:<node>`: frames for the node's sessions (see `bus`).
//!
//! Each script is a `.lua` file beside this one, compiled in with
//! `include_str!`.
//!
//! The scripts touch keys they compute (another node's set and channel), so
//! they need a single Redis primary, not Redis Cluster (docs/CLUSTER.md).

use std::sync::LazyLock;

use redis::Script;

/// Binds (uid, role) to a session. KEYS: uid hash, own bindings set. ARGV:
/// role, peer role, `<node>/<session>`, own node, prefix, uid.
/// Returns `{previous holder or "", peer or "", epoch, peer away (0/1),
/// previous holder away (0/1)}`; a previous holder
/// on another node is sent a `kill` (REPLACED) frame and loses the entry in
/// its node's set.
pub(crate) static BIND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("bind.lua")));

/// Frees (uid, role) if the session still holds it. KEYS: uid hash, own
/// bindings set. ARGV: role, peer role, `<node>/<session>`, `<role>:<uid>`.
/// Returns `{status, peer or ""}`: 1 freed, 0 held by another session (the
/// caller was replaced: nobody to tell), 2 not held at all (Redis lost it).
pub(crate) static UNBIND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("unbind.lua")));

/// Re-asserts a binding after Redis came back. KEYS: uid hash, own
/// bindings set. ARGV: role, peer role, `<node>/<session>`, `<role>:<uid>`,
/// the binding's epoch (the counter never goes back, so later binds still
/// order after it even if Redis came back empty).
/// Returns `{1, peer or ""}` when the session holds (uid, role) again, or
/// `{0, holder}` when another session took it meanwhile.
pub(crate) static REBIND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("rebind.lua")));

/// Frees an entry of this node's set that no local session holds any more
/// (it ended while Redis was unreachable). KEYS: uid hash, own bindings
/// set. ARGV: role, peer role, own node, `<role>:<uid>`. Returns the peer
/// to tell `byebye` (or "").
pub(crate) static RELEASE_STALE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("release_stale.lua")));

/// Marks the session holding a role away (ARGV[3] = 1) or back (0), if it
/// still holds it. KEYS: uid hash. ARGV: role, `<node>/<session>`, flag.
pub(crate) static SET_AWAY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("set_away.lua")));

/// Moves a binding to another node with its session (a resume handed the
/// session over). KEYS: uid hash, the new node's bindings set. ARGV: role,
/// expected holder `<old node>/<session>`, new holder, prefix,
/// `<role>:<uid>`, old node. Returns `{1, epoch}` when moved, `{0, 0}`
/// when a newer registration took the role meanwhile.
pub(crate) static MIGRATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("migrate.lua")));

/// Frees up to ARGV[3] bindings of a dead node, telling each peer `byebye`
/// on its own node's channel. KEYS: the dead node's bindings set, its
/// heartbeat key, the nodes set. ARGV: dead node, prefix, batch size.
/// Returns `{left, freed}`: left is -1 if the node is alive after all,
/// else how many entries are left to reap (0: done, the node is
/// forgotten); freed lists each binding it freed as four strings: role,
/// uid, session, peer session (empty for none).
pub(crate) static REAP: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("reap.lua")));

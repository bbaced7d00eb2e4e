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
pub(crate) static BIND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local previous = redis.call('HGET', KEYS[1], ARGV[1])
local previous_away = 0
if redis.call('HDEL', KEYS[1], ARGV[1] .. ':away') == 1 then previous_away = 1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
local member = ARGV[1] .. ':' .. ARGV[6]
redis.call('SADD', KEYS[2], member)
if previous and previous ~= ARGV[3] then
  local node, session = string.match(previous, '^([^/]+)/(.+)$')
  if node and node ~= ARGV[4] then
    redis.call('SREM', ARGV[5] .. ':node:' .. node .. ':bindings', member)
    redis.call('PUBLISH', ARGV[5] .. ':node:' .. node, cjson.encode({
      t = 'kill', uid = ARGV[6], role = ARGV[1], session = session, code = 'REPLACED'}))
  end
else
  previous = ''
end
local peer = redis.call('HGET', KEYS[1], ARGV[2]) or ''
local peer_away = redis.call('HEXISTS', KEYS[1], ARGV[2] .. ':away')
return {previous, peer, epoch, peer_away, previous_away}
"#,
    )
});

/// Frees (uid, role) if the session still holds it. KEYS: uid hash, own
/// bindings set. ARGV: role, peer role, `<node>/<session>`, `<role>:<uid>`.
/// Returns `{status, peer or ""}`: 1 freed, 0 held by another session (the
/// caller was replaced: nobody to tell), 2 not held at all (Redis lost it).
pub(crate) static UNBIND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local current = redis.call('HGET', KEYS[1], ARGV[1])
local peer = redis.call('HGET', KEYS[1], ARGV[2]) or ''
if not current then
  return {2, peer}
end
if current ~= ARGV[3] then
  return {0, ''}
end
redis.call('HDEL', KEYS[1], ARGV[1], ARGV[1] .. ':away')
redis.call('SREM', KEYS[2], ARGV[4])
if peer == '' then
  redis.call('DEL', KEYS[1])
end
return {1, peer}
"#,
    )
});

/// Re-asserts a binding after Redis came back. KEYS: uid hash, own
/// bindings set. ARGV: role, peer role, `<node>/<session>`, `<role>:<uid>`,
/// the binding's epoch (the counter never goes back, so later binds still
/// order after it even if Redis came back empty).
/// Returns `{1, peer or ""}` when the session holds (uid, role) again, or
/// `{0, holder}` when another session took it meanwhile.
pub(crate) static REBIND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and current ~= ARGV[3] then
  return {0, current}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[4])
if tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') < tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[5])
end
return {1, redis.call('HGET', KEYS[1], ARGV[2]) or ''}
"#,
    )
});

/// Frees an entry of this node's set that no local session holds any more
/// (it ended while Redis was unreachable). KEYS: uid hash, own bindings
/// set. ARGV: role, peer role, own node, `<role>:<uid>`. Returns the peer
/// to tell `byebye` (or "").
pub(crate) static RELEASE_STALE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('SREM', KEYS[2], ARGV[4])
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current or string.sub(current, 1, #ARGV[3] + 1) ~= ARGV[3] .. '/' then
  return ''
end
redis.call('HDEL', KEYS[1], ARGV[1], ARGV[1] .. ':away')
local peer = redis.call('HGET', KEYS[1], ARGV[2]) or ''
if peer == '' then
  redis.call('DEL', KEYS[1])
end
return peer
"#,
    )
});

/// Marks the session holding a role away (ARGV[3] = 1) or back (0), if it
/// still holds it. KEYS: uid hash. ARGV: role, `<node>/<session>`, flag.
pub(crate) static SET_AWAY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1] .. ':away', 1)
else
  redis.call('HDEL', KEYS[1], ARGV[1] .. ':away')
end
return 1
"#,
    )
});

/// Moves a binding to another node with its session (a resume handed the
/// session over). KEYS: uid hash, the new node's bindings set. ARGV: role,
/// expected holder `<old node>/<session>`, new holder, prefix,
/// `<role>:<uid>`, old node. Returns `{1, epoch}` when moved, `{0, 0}`
/// when a newer registration took the role meanwhile.
pub(crate) static MIGRATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return {0, 0}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HDEL', KEYS[1], ARGV[1] .. ':away')
redis.call('SREM', ARGV[4] .. ':node:' .. ARGV[6] .. ':bindings', ARGV[5])
redis.call('SADD', KEYS[2], ARGV[5])
return {1, redis.call('HINCRBY', KEYS[1], 'epoch', 1)}
"#,
    )
});

/// Frees up to ARGV[3] bindings of a dead node, telling each peer `byebye`
/// on its own node's channel. KEYS: the dead node's bindings set, its
/// heartbeat key, the nodes set. ARGV: dead node, prefix, batch size.
/// Returns -1 if the node is alive after all, else how many entries are
/// left to reap (0: done, the node is forgotten).
pub(crate) static REAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[2]) == 1 then
  return -1
end
local members = redis.call('SPOP', KEYS[1], tonumber(ARGV[3]))
local owner = ARGV[1] .. '/'
for _, member in ipairs(members) do
  local role, uid = string.match(member, '^(%a+):(.*)$')
  if role then
    local key = ARGV[2] .. ':uid:' .. uid
    local current = redis.call('HGET', key, role)
    if current and string.sub(current, 1, #owner) == owner then
      redis.call('HDEL', key, role, role .. ':away')
      local other = 'web'
      if role == 'web' then other = 'app' end
      local peer = redis.call('HGET', key, other)
      if peer then
        local node, session = string.match(peer, '^([^/]+)/(.+)$')
        if node then
          redis.call('PUBLISH', ARGV[2] .. ':node:' .. node, cjson.encode({
            t = 'deliver', uid = uid, role = other, session = session, event = 'byebye'}))
        end
      else
        redis.call('DEL', key)
      end
    end
  end
end
local left = redis.call('SCARD', KEYS[1])
if left == 0 then
  redis.call('SREM', KEYS[3], ARGV[1])
end
return left
"#,
    )
});

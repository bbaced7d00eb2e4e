if redis.call('EXISTS', KEYS[2]) == 1 then
  return {-1, {}}
end
local members = redis.call('SPOP', KEYS[1], tonumber(ARGV[3]))
local owner = ARGV[1] .. '/'
-- Each freed binding: role, uid, session, peer session ('' for none), for
-- the reaping node's session.ended / pair.ended hooks.
local freed = {}
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
      local peer_session = ''
      if peer then
        local node, session = string.match(peer, '^([^/]+)/(.+)$')
        if node then
          peer_session = session
          redis.call('PUBLISH', ARGV[2] .. ':node:' .. node, cjson.encode({
            t = 'deliver', uid = uid, role = other, session = session, event = 'byebye'}))
        end
      else
        redis.call('DEL', key)
      end
      table.insert(freed, role)
      table.insert(freed, uid)
      table.insert(freed, string.sub(current, #owner + 1))
      table.insert(freed, peer_session)
    end
  end
end
local left = redis.call('SCARD', KEYS[1])
if left == 0 then
  redis.call('SREM', KEYS[3], ARGV[1])
end
return {left, freed}

local current = redis.call('HGET', KEYS[1], ARGV[1])
if current ~= ARGV[3] then
  return {0, ''}
end
redis.call('HDEL', KEYS[1], ARGV[1], ARGV[1] .. ':away')
local peer = redis.call('HGET', KEYS[1], ARGV[2]) or ''
if peer == '' then
  redis.call('DEL', KEYS[1])
elseif ARGV[4] ~= '' then
  local node, session = string.match(peer, '^([^/]+)/(.+)$')
  if node then
    redis.call('PUBLISH', ARGV[4] .. ':node:' .. node, cjson.encode({
      t = 'deliver', uid = ARGV[5], role = ARGV[2], session = session, event = 'byebye'}))
  end
end
return {1, peer}

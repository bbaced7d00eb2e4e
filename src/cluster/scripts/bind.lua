local previous = redis.call('HGET', KEYS[1], ARGV[1])
local previous_away = 0
if redis.call('HDEL', KEYS[1], ARGV[1] .. ':away') == 1 then previous_away = 1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
if previous and previous ~= ARGV[3] then
  local node, session = string.match(previous, '^([^/]+)/(.+)$')
  if node and node ~= ARGV[4] then
    redis.call('PUBLISH', ARGV[5] .. ':node:' .. node, cjson.encode({
      t = 'kill', uid = ARGV[6], role = ARGV[1], session = session, code = 'REPLACED'}))
  end
else
  previous = ''
end
local peer = redis.call('HGET', KEYS[1], ARGV[2]) or ''
local peer_away = redis.call('HEXISTS', KEYS[1], ARGV[2] .. ':away')
return {previous, peer, epoch, peer_away, previous_away}

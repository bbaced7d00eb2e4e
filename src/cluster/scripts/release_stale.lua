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

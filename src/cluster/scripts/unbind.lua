local current = redis.call('HGET', KEYS[1], ARGV[1])
local peer = redis.call('HGET', KEYS[1], ARGV[2]) or ''
if not current then
  return {2, peer}
end
if current ~= ARGV[3] then
  return {0, ''}
end
redis.call('HDEL', KEYS[1], ARGV[1], ARGV[1] .. ':away')
if peer == '' then
  redis.call('DEL', KEYS[1])
end
return {1, peer}

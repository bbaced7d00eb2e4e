local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and current ~= ARGV[3] then
  return {0, current}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') < tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[4])
end
return {1, redis.call('HGET', KEYS[1], ARGV[2]) or ''}

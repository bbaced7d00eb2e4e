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

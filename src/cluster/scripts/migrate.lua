if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return {0, 0}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HDEL', KEYS[1], ARGV[1] .. ':away')
return {1, redis.call('HINCRBY', KEYS[1], 'epoch', 1)}

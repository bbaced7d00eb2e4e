if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return {0, 0}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HDEL', KEYS[1], ARGV[1] .. ':away')
redis.call('SREM', ARGV[4] .. ':node:' .. ARGV[6] .. ':bindings', ARGV[5])
redis.call('SADD', KEYS[2], ARGV[5])
return {1, redis.call('HINCRBY', KEYS[1], 'epoch', 1)}

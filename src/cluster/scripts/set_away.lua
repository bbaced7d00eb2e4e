if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1] .. ':away', 1)
else
  redis.call('HDEL', KEYS[1], ARGV[1] .. ':away')
end
return 1

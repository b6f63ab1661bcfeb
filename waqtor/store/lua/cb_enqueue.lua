-- Put one status callback in the durable outbox, due now.
-- KEYS: 1 callback items, 2 callback due
-- ARGV: 1 delivery id, 2 item JSON, 3 due ms
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1

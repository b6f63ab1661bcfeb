-- Send a given-up callback again (operator): due now, with a fresh 24 h of retries.
-- KEYS: 1 callback items, 2 callback due, 3 callback failed
-- ARGV: 1 id, 2 now ms
-- Returns 1, or 0 if it is not a failed callback.
local id, now = ARGV[1], tonumber(ARGV[2])
if redis.call('ZREM', KEYS[3], id) == 0 then return 0 end
local raw = redis.call('HGET', KEYS[1], id)
if not raw then return 0 end
local item = cjson.decode(raw)
item['created'] = now
item['failed'] = nil
item['requeued'] = now
redis.call('HSET', KEYS[1], id, cjson.encode(item))
redis.call('ZADD', KEYS[2], now, id)
return 1

-- Record one delivery attempt of a callback: delivered, retry later, or given up.
-- KEYS: 1 callback items, 2 callback due, 3 callback failed, 4 callback delivered
-- ARGV: 1 id, 2 outcome ('delivered' | 'retry' | 'failed'), 3 now ms, 4 next attempt ms,
--       5 HTTP status (0: none), 6 error text, 7 how many failed / delivered ones to keep
-- Returns 1, or 0 if the callback is no longer in the outbox.
local items, due, failed, delivered = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, outcome, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local keep = tonumber(ARGV[7])
local raw = redis.call('HGET', items, id)
if not raw then
  redis.call('ZREM', due, id)
  return 0
end
local item = cjson.decode(raw)
item['attempts'] = (item['attempts'] or 0) + 1
item['last'] = {at = now, status = tonumber(ARGV[5]), error = ARGV[6]}
if outcome == 'delivered' then
  redis.call('ZREM', due, id)
  redis.call('HDEL', items, id)
  local summary = {id = id, url = item['url'], event = item['event'], created = item['created'],
                   delivered = now, attempts = item['attempts'], status = tonumber(ARGV[5])}
  redis.call('LPUSH', delivered, cjson.encode(summary))
  redis.call('LTRIM', delivered, 0, keep - 1)
  return 1
end
if outcome == 'retry' then
  item['next'] = tonumber(ARGV[4])
  redis.call('HSET', items, id, cjson.encode(item))
  redis.call('ZADD', due, tonumber(ARGV[4]), id)
  return 1
end
item['failed'] = now
redis.call('HSET', items, id, cjson.encode(item))
redis.call('ZREM', due, id)
redis.call('ZADD', failed, now, id)
local extra = redis.call('ZCARD', failed) - keep
if extra > 0 then
  for _, old in ipairs(redis.call('ZRANGE', failed, 0, extra - 1)) do
    redis.call('HDEL', items, old)
  end
  redis.call('ZREMRANGEBYRANK', failed, 0, extra - 1)
end
return 1

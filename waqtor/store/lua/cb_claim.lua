-- Take up to N due callbacks for delivery. Each is leased (its due time pushed past the
-- delivery timeout), so another dispatcher does not take it meanwhile and a dispatcher that
-- dies leaves it to be taken again when the lease runs out: at least once.
-- KEYS: 1 callback due, 2 callback items
-- ARGV: 1 now ms, 2 lease ms, 3 limit
-- Returns a flat list {id, item JSON, ...}.
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local item = redis.call('HGET', KEYS[2], id)
  if item then
    redis.call('ZADD', KEYS[1], now + lease, id)
    table.insert(out, id)
    table.insert(out, item)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out

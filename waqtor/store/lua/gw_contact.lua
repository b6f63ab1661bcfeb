-- The daily cap on new contacts of a gateway account: a number it never messaged counts once,
-- when its first message is about to go out; past the cap it waits until the oldest new
-- contact of the last 24 h leaves the window.
-- KEYS: 1 contacted set, 2 new contacts (zset, scored by ms)
-- ARGV: 1 phone, 2 now ms, 3 cap (-1: none), 4 window ms
-- Returns {'known' | 'new' | 'capped', reopens at ms (capped) or 0}.
local phone, now, cap, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('SISMEMBER', KEYS[1], phone) == 1 then return {'known', 0} end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
if cap >= 0 then
  local used = redis.call('ZCARD', KEYS[2])
  if used >= cap then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    local reopen = now + window
    if first[2] then reopen = tonumber(first[2]) + window end
    return {'capped', reopen}
  end
end
redis.call('SADD', KEYS[1], phone)
redis.call('ZADD', KEYS[2], now, phone)
redis.call('PEXPIRE', KEYS[2], window)
return {'new', 0}

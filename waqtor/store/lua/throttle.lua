-- Reserve a provider request slot under a messages-per-second limit, shared by every process.
-- Like reserve.lua, but the spacing is fractional (80/s is 12.5 ms) and the key expires.
-- KEYS: 1 the account's next free slot (ms, fractional)
-- ARGV: 1 now ms, 2 interval ms (1000 / messages per second), 3 key expiry ms
-- Returns the slot (ms) at which the caller may start its request.
local now, interval = tonumber(ARGV[1]), tonumber(ARGV[2])
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = now
if nxt > slot then slot = nxt end
redis.call('SET', KEYS[1], string.format('%.3f', slot + interval), 'PX', ARGV[3])
return math.floor(slot)

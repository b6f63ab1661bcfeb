-- Reserve provider request slots under a messages-per-second limit, shared by every process.
-- Like reserve.lua, but the spacing is fractional (80/s is 12.5 ms) and the key expires.
-- KEYS: 1 the next free slot (ms, fractional) of the limit's owner (a phone number, an account)
-- ARGV: 1 now ms, 2 interval ms (1000 / messages per second), 3 key expiry ms,
--       4 how many consecutive slots to reserve (default 1)
-- Returns the first slot (ms, fractional as text); slot i is i intervals after it.
local now, interval = tonumber(ARGV[1]), tonumber(ARGV[2])
local count = tonumber(ARGV[4] or '1')
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = now
if nxt > slot then slot = nxt end
redis.call('SET', KEYS[1], string.format('%.3f', slot + count * interval), 'PX', ARGV[3])
return string.format('%.3f', slot)

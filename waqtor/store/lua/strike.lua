-- Record a ban signal for an account: count it, and rest the account with exponential backoff.
-- KEYS: 1 strikes counter, 2 cool-down end
-- ARGV: 1 now ms, 2 base cool-down ms, 3 longest cool-down ms
-- Returns {strikes in the last hour, cool-down end ms}.
local now, base, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local strikes = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], 3600000)
local rest = base * (2 ^ (strikes - 1))
if rest > cap then rest = cap end
local until_ms = now + rest
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if until_ms > current then redis.call('SET', KEYS[2], until_ms, 'PX', rest + 1000) end
return {strikes, until_ms}

-- Correct one account's backlog counter, only if nobody changed it since it was read.
-- KEYS: 1 the account's backlog   ARGV: 1 the value read, 2 the true value
-- Returns 1 if corrected.
local now = redis.call('GET', KEYS[1]) or '0'
if now ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1

-- Count one failed login or wrong API key of a client address; the first failure starts the
-- window, so the count resets when it ends.
-- KEYS: 1 the address's counter
-- ARGV: 1 window (ms)
-- Returns {failures in the current window, ms until the window ends}.
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}

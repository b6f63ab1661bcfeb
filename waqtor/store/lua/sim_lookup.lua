-- What the simulator knows of an attempt: its message id, or nothing. "Nothing" is final:
-- the attempt is fenced in the same step, so a request of it that is still on its way (its
-- worker lost the job but lives on) is refused when it arrives, never sent after the lookup.
-- KEYS: 1 attempts hash   ARGV: 1 attempt id, 2 fence mark
local known = redis.call('HGET', KEYS[1], ARGV[1])
if known and known ~= ARGV[2] then return known end
if not known then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return false

-- Record a gateway session's state; answer the one it replaces, so exactly one writer sees a
-- change (working -> stopped pauses the account once, however many workers notice).
-- KEYS: 1 the account's gateway-session hash
-- ARGV: 1 state, 2 working ('1' or '0'), 3 detail, 4 now ms
-- Returns {previous state or '', previous working or ''}.
local prev = redis.call('HMGET', KEYS[1], 'state', 'working')
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'working', ARGV[2], 'detail', ARGV[3], 'at_ms', ARGV[4])
if prev[1] ~= ARGV[1] then redis.call('HSET', KEYS[1], 'since_ms', ARGV[4]) end
return {prev[1] or '', prev[2] or ''}

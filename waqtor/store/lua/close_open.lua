-- Move every recipient still pending or waiting to retry to a final status (failed, canceled).
-- KEYS: 1 meta, 2 status, 3 detail, 4 retry, 5 message counts, 6 account backlog
-- ARGV: 1 new code (F or C), 2 now ms, 3 error code, 4 error reason
-- Returns how many recipients changed.
local meta, status, detail, retry, counts, backlog = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local new, now = ARGV[1], tonumber(ARGV[2])
local s = redis.call('GET', status) or ''
local changed = 0
for i = 1, #s do
  local c = string.sub(s, i, i)
  if c == 'P' or c == 'R' then
    local idx = i - 1
    redis.call('SETRANGE', status, idx, new)
    redis.call('HINCRBY', meta, 'n:' .. c, -1)
    redis.call('HINCRBY', counts, c, -1)
    local raw = redis.call('HGET', detail, idx)
    local rec = {}
    if raw then rec = cjson.decode(raw) end
    rec['st'] = new
    rec['t' .. new] = now
    if ARGV[3] ~= '' then rec['e'] = ARGV[3]; rec['r'] = ARGV[4] end
    redis.call('HSET', detail, idx, cjson.encode(rec))
    changed = changed + 1
  end
end
if changed > 0 then
  redis.call('HINCRBY', meta, 'n:' .. new, changed)
  redis.call('HINCRBY', counts, new, changed)
  redis.call('DECRBY', backlog, changed)
end
redis.call('DEL', retry)
return changed

-- Move every recipient still pending or waiting to retry to a final status (failed, canceled).
-- KEYS: 1 meta, 2 status, 3 detail, 4 message counts, then each lane's retry set, then each
--       lane's account backlog
-- ARGV: 1 new code (F or C), 2 now ms, 3 error code, 4 error reason, 5 lanes
-- Returns how many recipients changed.
--!include _account_messages
local meta, status, detail, counts = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local new, now, lanes = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[5])
local s = redis.call('GET', status) or ''
local changed = 0
local per_lane, moved = {}, {} -- moved[lane][old code]: for the accounts' counts
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
    local lane = idx % lanes
    per_lane[lane] = (per_lane[lane] or 0) + 1
    moved[lane] = moved[lane] or {}
    moved[lane][c] = (moved[lane][c] or 0) + 1
  end
end
if changed > 0 then
  redis.call('HINCRBY', meta, 'n:' .. new, changed)
  redis.call('HINCRBY', counts, new, changed)
end
for lane = 0, lanes - 1 do
  redis.call('DEL', KEYS[5 + lane])
  if per_lane[lane] then redis.call('DECRBY', KEYS[5 + lanes + lane], per_lane[lane]) end
  for c, n in pairs(moved[lane] or {}) do
    redis.call('HINCRBY', account_messages(KEYS[5 + lanes + lane]), c .. new, n)
  end
end
return changed

-- Put failed recipients back in line (operator retry), optionally only some error codes.
-- KEYS: 1 meta, 2 status, 3 detail, 4 message counts, then each lane's retry set, then each
--       lane's account backlog
-- ARGV: 1 now ms, 2 lanes, 3.. error codes to retry (none = every failed recipient)
-- Returns how many recipients were re-queued.
--!include _account_messages
local meta, status, detail, counts = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, lanes = tonumber(ARGV[1]), tonumber(ARGV[2])
local wanted = nil
if #ARGV > 2 then
  wanted = {}
  for i = 3, #ARGV do wanted[ARGV[i]] = true end
end
local s = redis.call('GET', status) or ''
local n, per_lane = 0, {}
local pos = string.find(s, 'F', 1, true)
while pos do
  local idx = pos - 1
  local raw = redis.call('HGET', detail, idx)
  local rec = {}
  if raw then rec = cjson.decode(raw) end
  if wanted == nil or (rec['e'] and wanted[rec['e']]) then
    local lane = idx % lanes
    redis.call('SETRANGE', status, idx, 'R')
    rec['st'] = 'R'
    rec['a'] = 0  -- a fresh budget of retries: the operator decided to try again
    redis.call('HSET', detail, idx, cjson.encode(rec))
    redis.call('ZADD', KEYS[5 + lane], now, idx)
    redis.call('INCR', KEYS[5 + lanes + lane])
    n = n + 1
    per_lane[lane] = (per_lane[lane] or 0) + 1
  end
  pos = string.find(s, 'F', pos + 1, true)
end
if n > 0 then
  redis.call('HINCRBY', meta, 'n:F', -n)
  redis.call('HINCRBY', meta, 'n:R', n)
  redis.call('HINCRBY', counts, 'F', -n)
  redis.call('HINCRBY', counts, 'R', n)
end
for lane, moved in pairs(per_lane) do
  redis.call('HINCRBY', account_messages(KEYS[5 + lanes + lane]), 'FR', moved)
end
return n

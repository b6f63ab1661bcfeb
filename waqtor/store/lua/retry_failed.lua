-- Put failed recipients back in line (operator retry), optionally only some error codes.
-- KEYS: 1 meta, 2 status, 3 detail, 4 retry, 5 message counts, 6 account backlog
-- ARGV: 1 now ms, 2.. error codes to retry (none = every failed recipient)
-- Returns how many recipients were re-queued.
local meta, status, detail, retry, counts, backlog = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now = tonumber(ARGV[1])
local wanted = nil
if #ARGV > 1 then
  wanted = {}
  for i = 2, #ARGV do wanted[ARGV[i]] = true end
end
local s = redis.call('GET', status) or ''
local n = 0
local pos = string.find(s, 'F', 1, true)
while pos do
  local idx = pos - 1
  local raw = redis.call('HGET', detail, idx)
  local rec = {}
  if raw then rec = cjson.decode(raw) end
  if wanted == nil or (rec['e'] and wanted[rec['e']]) then
    redis.call('SETRANGE', status, idx, 'R')
    rec['st'] = 'R'
    rec['a'] = 0  -- a fresh budget of retries: the operator decided to try again
    redis.call('HSET', detail, idx, cjson.encode(rec))
    redis.call('ZADD', retry, now, idx)
    n = n + 1
  end
  pos = string.find(s, 'F', pos + 1, true)
end
if n > 0 then
  redis.call('HINCRBY', meta, 'n:F', -n)
  redis.call('HINCRBY', meta, 'n:R', n)
  redis.call('HINCRBY', counts, 'F', -n)
  redis.call('HINCRBY', counts, 'R', n)
  redis.call('INCRBY', backlog, n)
end
return n

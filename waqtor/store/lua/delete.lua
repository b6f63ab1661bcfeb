-- Remove a finished campaign's ledger and take its recipients out of the global counts.
-- KEYS: 1 meta, 2 message counts, 3 campaigns index, 4 jobs index, 5 canceled campaigns,
--       6 jobs that were never campaigns, 7 the reconciler's missing-job hash, then the
--       campaign's own keys (ARGV[2] of them), then each lane's account backlog
-- ARGV: 1 campaign id, 2 how many campaign keys
-- Returns 1 if the campaign existed.
local meta, counts, index, jobs = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local first = 8  -- the campaign's own keys start here
local own = tonumber(ARGV[2])
local lanes = #KEYS - (first - 1) - own
redis.call('ZREM', jobs, ARGV[1])
redis.call('ZREM', index, ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('HDEL', KEYS[7], ARGV[1])
if redis.call('EXISTS', meta) == 0 then return 0 end
local fields = redis.call('HGETALL', meta)
for i = 1, #fields, 2 do
  local name = fields[i]
  if string.sub(name, 1, 2) == 'n:' then
    local n = tonumber(fields[i + 1])
    if n ~= 0 then redis.call('HINCRBY', counts, string.sub(name, 3), -n) end
  end
end
-- Recipients still to send leave their account's backlog.
local s = redis.call('GET', KEYS[first + 2]) or ''  -- the status string (3rd of the campaign keys)
if lanes > 0 then
  local per_lane = {}
  for i = 1, #s do
    local c = string.sub(s, i, i)
    if c == 'P' or c == 'R' or c == 'S' then
      local lane = (i - 1) % lanes
      per_lane[lane] = (per_lane[lane] or 0) + 1
    end
  end
  for lane = 0, lanes - 1 do
    if per_lane[lane] then redis.call('DECRBY', KEYS[first + own + lane], per_lane[lane]) end
  end
end
for i = first, first - 1 + own do redis.call('DEL', KEYS[i]) end
return 1

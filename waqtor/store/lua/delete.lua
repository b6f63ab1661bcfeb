-- Remove a finished campaign's ledger and take its recipients out of the global counts.
-- KEYS: 1 meta, 2 message counts, 3 campaigns index, 4 jobs index, 5 canceled campaigns,
--       6 jobs that were never campaigns, 7 the reconciler's missing-job hash, then the
--       campaign's own keys (ARGV[2] of them), then each lane's account backlog
-- ARGV: 1 campaign id, 2 how many campaign keys
-- Returns 1 if the campaign existed.
--!include _account_messages
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
-- Recipients still to send leave their account's backlog; every recipient leaves its
-- account's counts by status.
local s = redis.call('GET', KEYS[first + 2]) or ''  -- the status string (3rd of the campaign keys)
if lanes > 0 then
  local per_lane = {}
  for lane = 0, lanes - 1 do per_lane[lane] = {} end
  for i = 1, #s do
    local c = string.sub(s, i, i)
    local of_lane = per_lane[(i - 1) % lanes]
    of_lane[c] = (of_lane[c] or 0) + 1
  end
  for lane = 0, lanes - 1 do
    local n = per_lane[lane]
    local open = (n['P'] or 0) + (n['R'] or 0) + (n['S'] or 0)
    local backlog = KEYS[first + own + lane]
    if open > 0 then redis.call('DECRBY', backlog, open) end
    for c, k in pairs(n) do redis.call('HINCRBY', account_messages(backlog), c, -k) end
  end
end
for i = first, first - 1 + own do redis.call('DEL', KEYS[i]) end
return 1

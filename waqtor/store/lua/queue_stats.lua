-- Everything GET /api/queue/stats shows, read in one call (and one consistent moment). Read only.
-- The job queue's layout is not written down here: the engine passes in the keys it keeps its
-- job states in and, for each, its shape (``Engine.job_shapes``; ``store.queue_stats``).
-- KEYS: 1 the hash holding the queue's pause flag, 2 campaigns paused one by one (set),
--       3 message counts (hash), 4 accounts (hash), 5 canceled campaigns whose job finished
--       (sorted set), 6 jobs added outside waqtor with no campaign (sorted set), 7.. the keys
--       to count (their kinds in ARGV[6])
-- ARGV: 1, 2 an account's cool-down key is ARGV[1] .. name .. ARGV[2] (layout from keys.py),
--       3 the default account's name (it exists with no hash entry),
--       4 the mark in helper job ids (keys.HELPER_JOB_MARK): those jobs help send a campaign
--       that is already counted, so they are left out of every list's count,
--       5 the pause flag's field in KEYS[1],
--       6 one letter per key from KEYS[7]: 'z' a sorted set, 'l' a list, 'm' a list whose tail
--       entry is a marker, not a job, when it starts with ARGV[7],
--       7 that marker ('' when no list has one)
-- Returns {{count per key from KEYS[7]}, queue paused 0|1, paused campaigns, {message counts
--          hash, flat}, {paused account, its JSON, ...}, {account, cool-down end ms, ...},
--          canceled, foreign}.
local mark = ARGV[4]
-- Helper jobs are few and short-lived; a long list is read only to its first 1,000 entries.
local function helpers_in(key)
  local n = 0
  for _, id in ipairs(redis.call('LRANGE', key, 0, 999)) do
    if string.find(id, mark, 1, true) then n = n + 1 end
  end
  return n
end
local counts = {}
local kinds, marker = ARGV[6], ARGV[7]
for i = 7, #KEYS do
  local key, kind = KEYS[i], string.sub(kinds, i - 6, i - 6)
  if kind == 'z' then
    counts[#counts + 1] = redis.call('ZCARD', key)
  elseif kind == 'l' or kind == 'm' then
    local n = redis.call('LLEN', key)
    if kind == 'm' then
      local tail = redis.call('LINDEX', key, -1)
      if tail and string.sub(tail, 1, #marker) == marker then n = n - 1 end
    end
    counts[#counts + 1] = n - helpers_in(key)
  else
    return redis.error_reply('queue_stats: no kind for key ' .. (i - 6))
  end
end
local queue_paused = redis.call('HEXISTS', KEYS[1], ARGV[5])
local held = redis.call('SCARD', KEYS[2])
local messages = redis.call('HGETALL', KEYS[3])

local head, tail, default = ARGV[1], ARGV[2], ARGV[3]
local paused, cooling = {}, {}
local function cool(name)
  local until_ms = redis.call('GET', head .. name .. tail)
  if until_ms then
    cooling[#cooling + 1] = name
    cooling[#cooling + 1] = until_ms
  end
end
local accounts = redis.call('HGETALL', KEYS[4])
local seen_default = false
for i = 1, #accounts, 2 do
  local name, raw = accounts[i], accounts[i + 1]
  if name == default then seen_default = true end
  local ok, account = pcall(cjson.decode, raw)
  if ok and type(account) == 'table' and account.paused == true then
    paused[#paused + 1] = name
    paused[#paused + 1] = raw
  else
    cool(name)
  end
end
if not seen_default then cool(default) end
return {counts, queue_paused, held, messages, paused, cooling,
        redis.call('ZCARD', KEYS[5]), redis.call('ZCARD', KEYS[6])}

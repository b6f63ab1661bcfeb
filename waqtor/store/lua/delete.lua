-- Remove a finished campaign's ledger and take its recipients out of the global counts.
-- KEYS: 1 meta, 2 message counts, 3 campaigns index, 4 account backlog, 5 jobs index,
--       6.. the campaign's keys
-- ARGV: 1 campaign id
-- Returns 1 if the campaign existed.
local meta, counts, index, backlog, jobs = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
redis.call('ZREM', jobs, ARGV[1])
if redis.call('EXISTS', meta) == 0 then
  redis.call('ZREM', index, ARGV[1])
  return 0
end
local fields = redis.call('HGETALL', meta)
local open = 0
for i = 1, #fields, 2 do
  local name = fields[i]
  if string.sub(name, 1, 2) == 'n:' then
    local code = string.sub(name, 3)
    local n = tonumber(fields[i + 1])
    if n ~= 0 then redis.call('HINCRBY', counts, code, -n) end
    if code == 'P' or code == 'R' or code == 'S' then open = open + n end
  end
end
if open > 0 then redis.call('DECRBY', backlog, open) end
for i = 6, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('ZREM', index, ARGV[1])
return 1

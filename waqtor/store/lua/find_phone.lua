-- Indexes of a campaign's recipients whose phone contains a fragment, scanned inside Redis
-- (nothing is copied out), in request order.
-- KEYS: 1 recipients list
-- ARGV: 1 digits to find, 2 at most this many indexes
-- Returns {list length, {indexes...}}.
local n = redis.call('LLEN', KEYS[1])
local needle, limit = ARGV[1], tonumber(ARGV[2])
local hits = {}
for start = 0, n - 1, 2000 do
  local rows = redis.call('LRANGE', KEYS[1], start, start + 1999)
  for i, raw in ipairs(rows) do
    local phone = string.match(raw, '^%["([^"]+)"')
    if phone and string.find(phone, needle, 1, true) then
      hits[#hits + 1] = start + i - 1
      if #hits >= limit then return {n, hits} end
    end
  end
end
return {n, hits}

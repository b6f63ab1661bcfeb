-- The simulator accepts messages, each at most once per attempt id, never after a fence.
-- KEYS: 1 outbox list, 2 attempts hash (attempt id -> message id, or the fence mark)
-- ARGV: 1 fence mark, 2 attempt ids, 3 message ids, 4 outbox entries: each of 2-4 one string,
--       one item a line (three strings rather than three arguments a message: the client packs
--       3 arguments, not 300; JSON entries hold no raw newline)
-- Returns one reply per message: its message id (the one already recorded for a repeated
-- attempt: a retried write is not a second message), or the fence mark (refused: a lookup
-- declared this attempt never sent, so it must never land).
-- One HMGET and one HSET for the whole call, not one of each per message: a call inside Lua
-- costs about as much as the small write it makes.
local function lines(text)
  local out = {}
  for line in string.gmatch(text, '[^\n]+') do out[#out + 1] = line end
  return out
end
-- unpack() is bounded by Lua's C stack (about 8,000 values): commands go in chunks.
local CHUNK = 2000
local function each_chunk(cmd, key, list, reply)
  for first = 1, #list, CHUNK do
    local got = redis.call(cmd, key, unpack(list, first, math.min(#list, first + CHUNK - 1)))
    if reply then for j = 1, #got do reply[first + j - 1] = got[j] end end
  end
end
local attempts, ids, entries = lines(ARGV[2]), lines(ARGV[3]), lines(ARGV[4])
local known = {}
each_chunk('HMGET', KEYS[2], attempts, known)
local out, fresh, writes, seen = {}, {}, {}, {}
for i = 1, #attempts do
  local attempt = attempts[i]
  local found = seen[attempt]
  if known[i] then found = known[i] end
  if found then
    out[i] = found
  else
    seen[attempt] = ids[i]
    writes[#writes + 1] = attempt
    writes[#writes + 1] = ids[i]
    fresh[#fresh + 1] = entries[i]
    out[i] = ids[i]
  end
end
each_chunk('HSET', KEYS[2], writes)
each_chunk('RPUSH', KEYS[1], fresh)
return out

-- The simulator accepts messages, each at most once per attempt id, never after a fence.
-- KEYS: 1 outbox list, 2 attempts hash (attempt id -> message id, or the fence mark)
-- ARGV: 1 fence mark, 2 attempt ids, 3 message ids, 4 outbox entries: each of 2-4 one string,
--       one item a line (three strings rather than three arguments a message: the client packs
--       3 arguments, not 300; JSON entries hold no raw newline)
-- Returns one reply per message: its message id (the one already recorded for a repeated
-- attempt: a retried write is not a second message), or the fence mark (refused: a lookup
-- declared this attempt never sent, so it must never land).
local function lines(text)
  local out = {}
  for line in string.gmatch(text, '[^\n]+') do out[#out + 1] = line end
  return out
end
local attempts, ids, entries = lines(ARGV[2]), lines(ARGV[3]), lines(ARGV[4])
local out = {}
local fresh = {}
for i = 1, #attempts do
  local attempt, id = attempts[i], ids[i]
  local known = redis.call('HGET', KEYS[2], attempt)
  if known then
    out[i] = known
  else
    redis.call('HSET', KEYS[2], attempt, id)
    fresh[#fresh + 1] = entries[i]
    out[i] = id
  end
end
if #fresh > 0 then redis.call('RPUSH', KEYS[1], unpack(fresh)) end
return out

-- The simulator accepts messages, each at most once per attempt id, never after a fence.
-- KEYS: 1 outbox list, 2 attempts hash (attempt id -> message id, or the fence mark)
-- ARGV: 1 fence mark, then triples {attempt id, message id, outbox entry}
-- Returns one reply per message: its message id (the one already recorded for a repeated
-- attempt: a retried write is not a second message), or the fence mark (refused: a lookup
-- declared this attempt never sent, so it must never land).
local fence = ARGV[1]
local out = {}
for i = 2, #ARGV, 3 do
  local attempt, id = ARGV[i], ARGV[i + 1]
  local known = redis.call('HGET', KEYS[2], attempt)
  if known then
    table.insert(out, known)
  else
    redis.call('HSET', KEYS[2], attempt, id)
    redis.call('RPUSH', KEYS[1], ARGV[i + 2])
    table.insert(out, id)
  end
end
return out

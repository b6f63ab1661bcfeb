-- Reserve an account's next send slot: max(now, next free), then push next free by the gap.
-- Every process and campaign on the account goes through here, so the gap holds across all.
-- A priority reservation (instant mode: transactional) takes the earliest slot the gap allows
-- after the last send, ahead of bulk reservations; a bulk sender whose slot it takes finds the
-- gap too short at claim time and waits one more gap.
-- KEYS: 1 account next-slot key, 2 account last-send time
-- ARGV: 1 now ms, 2 gap ms (delay plus this send's jitter), 3 '1' for priority
-- Returns the slot (ms) at which the caller may send.
local now, gap = tonumber(ARGV[1]), tonumber(ARGV[2])
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = now
if ARGV[3] == '1' then
  local last = tonumber(redis.call('GET', KEYS[2]) or '0')
  if last + gap > slot then slot = last + gap end
  if slot + gap > nxt then redis.call('SET', KEYS[1], slot + gap) end
  return slot
end
if nxt > slot then slot = nxt end
redis.call('SET', KEYS[1], slot + gap)
return slot

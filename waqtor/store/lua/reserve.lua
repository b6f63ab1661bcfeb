-- Reserve an account's next send slot: max(now, next free), then push next free by the gap.
-- Every process and campaign on the account goes through here, so the gap holds across all.
-- KEYS: 1 account next-slot key
-- ARGV: 1 now ms, 2 gap ms (delay plus this send's jitter)
-- Returns the slot (ms) at which the caller may send.
local now, gap = tonumber(ARGV[1]), tonumber(ARGV[2])
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = now
if nxt > slot then slot = nxt end
redis.call('SET', KEYS[1], slot + gap)
return slot

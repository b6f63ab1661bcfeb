-- Record the outcome of one attempt: sending|unknown -> sent|failed|retry|unknown.
-- KEYS: 1 meta, 2 status, 3 detail, 4 inflight, 5 retry, 6 message counts, 7 account backlog,
--       8 unsettled, 9 account last-send time, 10 account's sent-text log (dedupe guard),
--       11 account's 24 h send log (caps)
-- ARGV: 1 index, 2 attempt id, 3 new code (D F R U), 4 now ms, 5 provider message id,
--       6 error code, 7 error reason, 8 retry due ms / unknown lease end ms,
--       9 when the request was handed to the provider (ms; 0: it never was),
--       10 hash of phone and text ('' = none), 11 '1' when a deferral (quiet hours) should not
--       count as an attempt
-- Returns 1 when applied, 0 when the attempt is stale or the recipient already settled.
local meta, status, detail, inflight, retry, counts, backlog, unsettled =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local idx, attempt, new, now = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])

local cur = redis.call('GETRANGE', status, idx, idx)
if cur ~= 'S' and cur ~= 'U' then return 0 end
local raw = redis.call('HGET', detail, idx)
if not raw then return 0 end
local rec = cjson.decode(raw)
if rec['id'] ~= attempt then return 0 end
if cur == new then return 0 end

-- The account's gap counts from when this request really went out, not from its claim: a
-- next claim must wait for it, however late this send left after being claimed.
local sent_at = tonumber(ARGV[9] or '0')
if sent_at > 0 and sent_at + 1 > tonumber(redis.call('GET', KEYS[9]) or '0') then
  redis.call('SET', KEYS[9], sent_at + 1)
end

redis.call('SETRANGE', status, idx, new)
redis.call('HINCRBY', meta, 'n:' .. cur, -1)
redis.call('HINCRBY', meta, 'n:' .. new, 1)
redis.call('HINCRBY', counts, cur, -1)
redis.call('HINCRBY', counts, new, 1)
redis.call('HDEL', inflight, idx)
redis.call('ZREM', unsettled, idx)
-- The backlog counts recipients that still need a send: sending and retry are in it.
local was_open = (cur == 'S')
local is_open = (new == 'R')
if was_open and not is_open then redis.call('DECR', backlog) end
if is_open and not was_open then redis.call('INCR', backlog) end

rec['st'] = new
rec['t' .. new] = now
if ARGV[5] ~= '' then rec['m'] = ARGV[5] end
if ARGV[6] ~= '' then rec['e'] = ARGV[6]; rec['r'] = ARGV[7] end
if new == 'D' then rec['e'] = nil; rec['r'] = nil end
if new == 'D' and ARGV[10] and ARGV[10] ~= '' then
  redis.call('ZADD', KEYS[10], now, ARGV[10])
  redis.call('ZREMRANGEBYSCORE', KEYS[10], '-inf', now - 7 * 86400000)
end
if ARGV[11] == '1' then
  -- Deferred before sending: not an attempt, and not a send against the account's caps.
  rec['a'] = (rec['a'] or 1) - 1
  redis.call('ZREM', KEYS[11], attempt)
end
if new == 'R' then redis.call('ZADD', retry, tonumber(ARGV[8]), idx) end
if new == 'U' then redis.call('ZADD', unsettled, tonumber(ARGV[8]), idx) end
redis.call('HSET', detail, idx, cjson.encode(rec))
return 1

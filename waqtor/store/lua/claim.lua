-- Claim the next recipient of a campaign for sending: pending -> sending, atomically.
-- KEYS: 1 meta, 2 recipients, 3 status, 4 detail, 5 inflight, 6 retry, 7 message counts,
--       8 job lock, 9 queue meta, 10 unsettled, 11 account last-send time,
--       12 account suppression set, 13 account backlog, 14 account 24 h send log,
--       15 account cool-down end, 16 attempt index (webhook providers),
--       17 account next-slot key (reserve.lua's; used only with ARGV 12)
-- ARGV: 1 lock token ('' = no lock check, instant mode), 2 attempt id, 3 now ms,
--       4 worker id, 5 lease ms, 6 minimum gap ms (MESSAGE_DELAY), 7 hourly cap, 8 daily cap
--       (-1: none), 9 lane, 10 lanes, 11 attempt index TTL ms (0: the provider settles no
--       outcome by webhook, nothing to index), 12 gap ms to reserve first, as reserve.lua
--       does (absent or -1: the caller reserved its slot already)
-- A campaign spread over k accounts has k lanes: recipient i belongs to lane i mod k and is
-- sent by that lane's account; the account keys (11-15) and the retry set (6) are the lane's.
-- Returns {'claimed', index, attempt number, packed recipient} or one of
-- {'lost'} {'canceled'} {'paused'} {'paused_queue'} {'wait', due_ms} {'settle', due_ms}
-- {'inflight'} {'done'} {'early', not_before_ms} {'cooling', until_ms}
-- {'capped', reopens_ms, 'hourly'|'daily'} {'lane_done'} (k > 1: this lane has nothing left)
-- {'expired'}
--!include _claim_gate
--!include _account_messages
local meta, rlist, status, detail, inflight, retry, counts, lock, qmeta, unsettled, last =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local token, attempt, now, worker, lease = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local min_gap = tonumber(ARGV[6])
local lane, lanes = tonumber(ARGV[9]), tonumber(ARGV[10])
local stop, total, cursor, cursor_field = claim_gate(meta, lock, qmeta, token, now, lane)
if stop then return stop end
local idx = nil
-- A paced lane that woke when it expected its account's next slot reserves it here, in the
-- claim's round trip: taken now if free (as reserve.lua: max(now, next free), then next free
-- moves on by the gap); if another sender holds it, the next free one is reserved and the
-- caller comes back then ('early'), to claim without reserving again.
local reserve_gap = tonumber(ARGV[12] or '-1')
if reserve_gap >= 0 then
  local nxt = tonumber(redis.call('GET', KEYS[17]) or '0')
  if nxt > now then
    redis.call('SET', KEYS[17], nxt + reserve_gap)
    return {'early', nxt}
  end
  redis.call('SET', KEYS[17], now + reserve_gap)
end
-- The slot reserved earlier spaces sends out; this check makes the gap exact even when a
-- previous sender woke late: no two claims of one account closer than MESSAGE_DELAY.
local prev = tonumber(redis.call('GET', last) or '0')
if now < prev + min_gap then return {'early', prev + min_gap} end

-- The account rests after a ban signal, and never goes past its sliding hourly/daily caps
-- (but a lane with nothing left to send finishes now rather than waiting for either).
local has_work = cursor < total or redis.call('ZCARD', retry) > 0
local cool = tonumber(redis.call('GET', KEYS[15]) or '0')
if has_work and now < cool then return {'cooling', cool} end
local hcap, dcap = tonumber(ARGV[7]), tonumber(ARGV[8])
local capped = hcap >= 0 or dcap >= 0
if capped and has_work then
  local win = KEYS[14]
  redis.call('ZREMRANGEBYSCORE', win, '-inf', now - 86400000)
  if dcap >= 0 and redis.call('ZCARD', win) >= dcap then
    local first = redis.call('ZRANGE', win, 0, 0, 'WITHSCORES')
    local reopen = now + 60000
    if #first > 0 then reopen = tonumber(first[2]) + 86400000 end
    return {'capped', reopen, 'daily'}
  end
  if hcap >= 0 and redis.call('ZCOUNT', win, now - 3600000, '+inf') >= hcap then
    local first = redis.call('ZRANGEBYSCORE', win, now - 3600000, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    local reopen = now + 60000
    if #first > 0 then reopen = tonumber(first[2]) + 3600000 end
    return {'capped', reopen, 'hourly'}
  end
end

-- Pick the next recipient: a due retry first, else the next pending one in request order.
-- A number that opted out since the campaign was queued is skipped as suppressed, here, so it
-- is never sent whoever queued it.
local packed = nil
for _ = 1, 1000 do
  idx = nil
  local due = redis.call('ZRANGEBYSCORE', retry, '-inf', now, 'LIMIT', 0, 1)
  if #due > 0 then
    idx = tonumber(due[1])
    redis.call('ZREM', retry, due[1])
  else
    local start = cursor
    while cursor < total do
      local c = redis.call('GETRANGE', status, cursor, cursor)
      cursor = cursor + lanes
      if c == 'P' then idx = cursor - lanes; break end
    end
    if cursor ~= start then redis.call('HSET', meta, cursor_field, cursor) end
  end
  if idx == nil then break end
  packed = redis.call('LINDEX', rlist, idx)
  local phone = string.match(packed, '^%["([^"]+)"')
  if redis.call('SISMEMBER', KEYS[12], phone) == 0 then break end
  local was = redis.call('GETRANGE', status, idx, idx)
  redis.call('SETRANGE', status, idx, 'Z')
  redis.call('HINCRBY', meta, 'n:' .. was, -1)
  redis.call('HINCRBY', meta, 'n:Z', 1)
  redis.call('HINCRBY', counts, was, -1)
  redis.call('HINCRBY', counts, 'Z', 1)
  redis.call('HINCRBY', account_messages(KEYS[13]), was .. 'Z', 1)
  redis.call('DECR', KEYS[13])
  idx = nil
end
-- A long run of opted-out numbers: let the caller come straight back for more.
if idx == nil and cursor < total then return {'early', now} end

if idx == nil then
  local nxt = redis.call('ZRANGE', retry, 0, 0, 'WITHSCORES')
  if #nxt > 0 then return {'wait', nxt[2]} end
  if lanes > 1 then return {'lane_done'} end
  if redis.call('HLEN', inflight) > 0 then return {'inflight'} end
  local unk = redis.call('ZRANGE', unsettled, 0, 0, 'WITHSCORES')
  if #unk > 0 then return {'settle', unk[2]} end
  return {'done'}
end

redis.call('SET', last, now)
if capped then redis.call('ZADD', KEYS[14], now, attempt) end
local old = redis.call('GETRANGE', status, idx, idx)
redis.call('SETRANGE', status, idx, 'S')
redis.call('HINCRBY', meta, 'n:' .. old, -1)
redis.call('HINCRBY', meta, 'n:S', 1)
redis.call('HINCRBY', counts, old, -1)
redis.call('HINCRBY', counts, 'S', 1)
redis.call('HINCRBY', account_messages(KEYS[13]), old .. 'S', 1)
local raw = redis.call('HGET', detail, idx)
local rec = {}
if raw then rec = cjson.decode(raw) end
rec['a'] = (rec['a'] or 0) + 1
rec['id'] = attempt
rec['w'] = worker
rec['ts'] = now
rec['lease'] = now + lease
redis.call('HSET', detail, idx, cjson.encode(rec))
redis.call('HSET', inflight, idx, attempt)
-- Before the request: a status webhook about this attempt finds the recipient even if the
-- worker dies before it records anything.
local index_ttl = tonumber(ARGV[11] or '0')
if index_ttl > 0 then
  redis.call('HSET', KEYS[16], attempt, idx)
  redis.call('PEXPIRE', KEYS[16], index_ttl)
end
return {'claimed', idx, rec['a'], packed}

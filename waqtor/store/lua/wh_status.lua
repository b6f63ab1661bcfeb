-- Apply one delivery status from a WhatsApp webhook (sent, delivered, read, failed) to a
-- recipient, and queue its status callback in the same step.
-- Idempotent and order-tolerant: a status never moves back (sent < delivered < read), a
-- repeated event changes nothing, and failed only follows sent (or settles an unknown).
-- An unknown (or still in-flight) recipient is settled by the event: the message did go out.
-- KEYS: 1 meta, 2 status, 3 detail, 4 inflight, 5 unsettled, 6 message counts,
--       7 account backlog, 8 attempt index, 9 recipients, 10 callback items, 11 callback due,
--       12 webhook stats, 13 today's message index
-- ARGV: 1 index, 2 provider message id, 3 new code (D V E F), 4 event time ms, 5 now ms,
--       6 attempt id from the message's callback data ('' if none), 7 error code,
--       8 error reason, 9 callback url ('' none), 10 callback id, 11 account,
--       12 campaign id, 13 message index TTL ms
-- Returns {outcome, previous code, new code}: outcome is applied, duplicate, stale (an older
-- status than the recipient's), other (another attempt's message) or missing.
local meta, status, detail, inflight, unsettled, counts, backlog, attempts =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local idx, mid, new = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local at, now, attempt = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]

local function done(outcome, cur)
  redis.call('HINCRBY', KEYS[12], outcome, 1)
  return {outcome, cur or '', new}
end

if redis.call('EXISTS', meta) == 0 then return done('missing') end
local cur = redis.call('GETRANGE', status, idx, idx)
if cur == '' then return done('missing') end
local raw = redis.call('HGET', detail, idx)
local rec = {}
if raw then rec = cjson.decode(raw) end
-- Only this recipient's own message counts: not the message of a superseded attempt.
if rec['m'] and rec['m'] ~= mid then return done('other', cur) end
if attempt ~= '' and rec['id'] and rec['id'] ~= attempt and not rec['m'] then
  return done('other', cur)
end

local rank = {S = 0, U = 0, D = 1, V = 2, E = 3}
local open = (cur == 'S' or cur == 'U')
if cur == new then return done('duplicate', cur) end
if open then
  -- settles an unknown (or a send whose worker has not recorded it yet): any status will do
elseif rank[cur] ~= nil then
  if new == 'F' then
    if cur ~= 'D' then return done('stale', cur) end  -- failed only follows sent
  elseif rank[new] <= rank[cur] then
    return done('stale', cur)  -- a late delivered never overwrites read
  end
else
  return done('stale', cur)  -- pending, retry, failed, canceled, suppressed: not ours to move
end

redis.call('SETRANGE', status, idx, new)
redis.call('HINCRBY', meta, 'n:' .. cur, -1)
redis.call('HINCRBY', meta, 'n:' .. new, 1)
redis.call('HINCRBY', counts, cur, -1)
redis.call('HINCRBY', counts, new, 1)
if cur == 'S' then
  redis.call('HDEL', inflight, idx)
  redis.call('DECR', backlog)
end
if open then
  redis.call('ZREM', unsettled, idx)
  if rec['id'] then redis.call('HDEL', attempts, rec['id']) end
  rec['wh'] = 1  -- settled by a status webhook
  -- Its later statuses find it by message id (a gateway's acks carry nothing else of ours).
  redis.call('HSET', KEYS[13], mid, ARGV[12] .. ':' .. idx)
  redis.call('PEXPIRE', KEYS[13], ARGV[13])
end
rec['st'] = new
rec['t' .. new] = at
rec['m'] = mid
if new == 'F' then
  rec['e'] = ARGV[7]; rec['r'] = ARGV[8]
else
  rec['e'] = nil; rec['r'] = nil
end
redis.call('HSET', detail, idx, cjson.encode(rec))

if ARGV[9] ~= '' then
  local names = {P = 'pending', S = 'sending', R = 'retry', D = 'sent', V = 'delivered',
                 E = 'read', F = 'failed', U = 'unknown', C = 'canceled', Z = 'suppressed'}
  local packed = redis.call('LINDEX', KEYS[9], idx) or ''
  local event = {
    event = 'message.status', id = ARGV[10], campaignId = ARGV[12], account = ARGV[11],
    index = idx, phone = string.match(packed, '^%["([^"]+)"') or '',
    status = names[new], previousStatus = names[cur], messageId = mid, at = at, ts = now,
    source = 'webhook'
  }
  if new == 'F' then event['errorCode'] = ARGV[7]; event['error'] = ARGV[8] end
  local item = {id = ARGV[10], url = ARGV[9], body = cjson.encode(event),
                event = 'message.status', created = now, attempts = 0}
  redis.call('HSET', KEYS[10], ARGV[10], cjson.encode(item))
  redis.call('ZADD', KEYS[11], now, ARGV[10])
end
return done('applied', cur)

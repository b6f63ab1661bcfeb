-- Record the outcomes of attempts of one lane, atomically: sending|unknown -> sent|failed|
-- retry|unknown|skipped, with the shared counters written once. The one-recipient send path
-- and the settling of unknowns use it with a single outcome.
-- KEYS: 1 meta, 2 status, 3 detail, 4 inflight, 5 retry, 6 message counts, 7 account backlog,
--       8 unsettled, 9 account last-send time, 10 account's sent-text log (dedupe guard),
--       11 account's 24 h send log (caps), 12 callback items, 13 callback due, 14 recipients,
--       15 today's message index, 16 the campaign's attempt index
-- ARGV: 1 now ms, 2 latest time a request was handed to the provider (ms; 0: none was),
--       3 the batch's attempt id prefix (recipient i's attempt is prefix .. '.' .. i; '' when
--       each outcome names its own attempt),
--       4 JSON array of outcomes, each [index, new code (D F R U K), provider message id,
--       error code, error reason, retry due ms / unknown lease end ms, hash of phone and text
--       ('' = none), 1 when a deferral (quiet hours) should not count as an attempt,
--       attempt id ('' = from the prefix), and when a callback URL is given: callback id,
--       phone],
--       5 callback URL ('' = none), 6 campaign id, 7 account,
--       8 message index TTL ms (0: the provider settles nothing by webhook: no indexes)
-- With indexes, each sent message id is indexed (a later status webhook finds its recipient)
-- and a definite outcome drops its attempt from the attempt index (only in-flight and unknown
-- attempts need it), in the same step as the outcome.
-- Each applied change queues its status callback here, in the same step as the change: a crash
-- cannot record one without the other.
-- (One JSON argument rather than nine per outcome: the client packs one string, not 900.)
-- Returns one flag per outcome: 1 applied, 0 stale (another attempt, or already settled),
-- then the campaign's recipients still open (pending, retry, sending): its progress, read here
-- rather than in another round trip.
--!include _batch_writes
local meta, status, detail, inflight, retry, counts, backlog, unsettled =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local now, sent_at, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local items = cjson.decode(ARGV[4])
local pre = prefix .. '.' -- attempt i is pre .. i
local now_s = string.format('%.0f', now)
local n = #items
if n == 0 then return {-1} end

local idxs = {}
for i = 1, n do idxs[i] = items[i][1] end
local raws = redis.call('HMGET', detail, unpack(idxs))

if sent_at > 0 and sent_at + 1 > tonumber(redis.call('GET', KEYS[9]) or '0') then
  redis.call('SET', KEYS[9], sent_at + 1)
end

-- The status bytes are read in one GETRANGE over the batch's span (a batch is mostly
-- consecutive recipients) and written back one SETRANGE per run of consecutive indexes.
local lo, hi = idxs[1], idxs[1]
for i = 2, n do
  if idxs[i] < lo then lo = idxs[i] end
  if idxs[i] > hi then hi = idxs[i] end
end
local span = nil
if hi - lo < 4 * n then span = redis.call('GETRANGE', status, lo, hi) end
local mark_idx, mark_code = {}, {}

local applied, prevs, delta, backlog_delta = {}, {}, {}, 0
local moves = {} -- moves[from .. to]: recipients moved, for the account's counts
local details, done, retries, unknowns, texts, deferred = {}, {}, {}, {}, {}, {}
local had_unknown = false
for i = 1, n do
  local item = items[i]
  local idx, new = item[1], item[2]
  local attempt = item[9]
  if attempt == '' then attempt = pre .. idx end
  local cur
  if span then cur = string.sub(span, idx - lo + 1, idx - lo + 1)
  else cur = redis.call('GETRANGE', status, idx, idx) end
  local rec, encoded = nil, nil
  local raw = raws[i]
  if (cur == 'S' or cur == 'U') and cur ~= new and raw then
    if new == 'D' and item[8] ~= 1 and not string.find(raw, '"st"', 1, true)
        and not string.find(raw, '"e"', 1, true) then
      -- A first outcome that is a plain send: append to the claim's record as text instead
      -- of decoding and encoding it (the same JSON, once per recipient).
      if string.find(raw, '"id":"' .. attempt .. '"', 1, true) then
        rec = true
        -- One concatenation each way (a chain of .. builds one string, not one per step).
        if item[3] ~= '' then
          encoded = string.sub(raw, 1, -2) .. ',"st":"D","tD":' .. now_s .. ',"m":' ..
            cjson.encode(item[3]) .. '}'
        else
          encoded = string.sub(raw, 1, -2) .. ',"st":"D","tD":' .. now_s .. '}'
        end
      end
    else
      rec = cjson.decode(raw)
      if rec['id'] ~= attempt then rec = nil end
    end
  end
  if rec == nil then
    applied[i] = 0
  else
    applied[i] = 1
    prevs[i] = cur
    mark_idx[#mark_idx + 1], mark_code[#mark_code + 1] = idx, new
    delta[cur] = (delta[cur] or 0) - 1
    delta[new] = (delta[new] or 0) + 1
    if cur ~= new then moves[cur .. new] = (moves[cur .. new] or 0) + 1 end
    done[#done + 1] = idx
    if cur == 'U' then had_unknown = true end
    if cur == 'S' and new ~= 'R' then backlog_delta = backlog_delta - 1 end
    if cur ~= 'S' and new == 'R' then backlog_delta = backlog_delta + 1 end
    if new == 'D' and item[7] ~= '' then
      texts[#texts + 1] = now
      texts[#texts + 1] = item[7]
    end
  end
  if rec ~= nil and encoded == nil then
    rec['st'] = new
    rec['t' .. new] = now
    local mid, code = item[3], item[4]
    if mid ~= '' then rec['m'] = mid end
    if code ~= '' then rec['e'] = code; rec['r'] = item[5] end
    if new == 'D' then rec['e'] = nil; rec['r'] = nil end
    if item[8] == 1 then
      rec['a'] = (rec['a'] or 1) - 1
      deferred[#deferred + 1] = attempt
    end
    if new == 'R' then
      retries[#retries + 1] = item[6]
      retries[#retries + 1] = idx
    end
    if new == 'U' then
      unknowns[#unknowns + 1] = item[6]
      unknowns[#unknowns + 1] = idx
    end
    encoded = cjson.encode(rec)
  end
  if encoded ~= nil then
    details[#details + 1] = idx
    details[#details + 1] = encoded
  end
end

write_codes(status, mark_idx, mark_code)
apply_counts(meta, counts, delta, backlog, moves)
if backlog_delta ~= 0 then redis.call('INCRBY', backlog, backlog_delta) end
if #done > 0 then
  redis.call('HDEL', inflight, unpack(done))
  if had_unknown then redis.call('ZREM', unsettled, unpack(done)) end
  redis.call('HSET', detail, unpack(details))
end
local url = ARGV[5] or ''
if url ~= '' then
  local names = {P = 'pending', S = 'sending', R = 'retry', D = 'sent', F = 'failed',
                 U = 'unknown', K = 'skipped'}
  for i = 1, n do
    if applied[i] == 1 then
      local item = items[i]
      local event = {
        event = 'message.status', id = item[10], ts = now, campaignId = ARGV[6],
        account = ARGV[7], index = item[1], phone = item[11], status = names[item[2]],
        previousStatus = names[prevs[i]], source = 'worker'
      }
      if item[11] == '' then
        event['phone'] = string.match(redis.call('LINDEX', KEYS[14], item[1]) or '', '^%["([^"]+)"') or ''
      end
      if item[3] ~= '' then event['messageId'] = item[3] end
      if item[4] ~= '' then event['errorCode'] = item[4]; event['error'] = item[5] end
      local entry = {id = item[10], url = url, event = 'message.status',
                     body = cjson.encode(event), created = now, attempts = 0}
      redis.call('HSET', KEYS[12], item[10], cjson.encode(entry))
      redis.call('ZADD', KEYS[13], now, item[10])
    end
  end
end
local index_ttl = tonumber(ARGV[8] or '0')
if index_ttl > 0 then
  local mids, drop = {}, {}
  for i = 1, n do
    local item = items[i]
    if item[2] == 'D' and item[3] ~= '' then
      mids[#mids + 1] = item[3]
      mids[#mids + 1] = ARGV[6] .. ':' .. item[1]
    end
    if applied[i] == 1 and item[2] ~= 'U' then
      local attempt = item[9]
      if attempt == '' then attempt = pre .. item[1] end
      drop[#drop + 1] = attempt
    end
  end
  if #mids > 0 then
    redis.call('HSET', KEYS[15], unpack(mids))
    redis.call('PEXPIRE', KEYS[15], index_ttl)
  end
  if #drop > 0 then redis.call('HDEL', KEYS[16], unpack(drop)) end
end
if #texts > 0 then
  redis.call('ZADD', KEYS[10], unpack(texts))
  redis.call('ZREMRANGEBYSCORE', KEYS[10], '-inf', now - 7 * 86400000)
end
if #deferred > 0 then redis.call('ZREM', KEYS[11], unpack(deferred)) end
if #retries > 0 then redis.call('ZADD', retry, unpack(retries)) end
if #unknowns > 0 then redis.call('ZADD', unsettled, unpack(unknowns)) end
local open = redis.call('HMGET', meta, 'n:P', 'n:R', 'n:S')
applied[n + 1] = tonumber(open[1] or '0') + tonumber(open[2] or '0') + tonumber(open[3] or '0')
return applied

-- Claim up to N recipients of one lane at once: pending|retry -> sending, atomically.
-- Used for accounts with no pacing gap, whatever the provider: one script call instead of N,
-- and the same per-recipient record as claim.lua (each recipient gets its own attempt id,
-- written to the detail, the in-flight hash and, for webhook providers, the attempt index
-- before any send).
-- KEYS: those of claim.lua (Keys.claim_keys): 1 meta, 2 recipients, 3 status, 4 detail,
--       5 inflight, 6 retry (the lane's), 7 message counts, 8 job lock, 9 queue meta,
--       10 unsettled (unused here), 11 account last-send time, 12 account suppression set,
--       13 account backlog, 14 account 24 h send log, 15 account cool-down end,
--       16 attempt index (webhook providers), 17 account next slot (unused here)
-- ARGV: 1 lock token ('' = none), 2 attempt id prefix (unique per call), 3 now ms,
--       4 worker id, 5 lease ms, 6 hourly cap, 7 daily cap (-1: none), 8 lane, 9 lanes, 10 N,
--       11 attempt index TTL ms (0: nothing to index)
-- The attempt id of recipient i is prefix .. '.' .. i.
-- Returns {'claimed', idx, attempt number, packed recipient, idx, ...} or the same control
-- answers as claim.lua (not 'early' for a gap: these accounts have none; 'inflight',
-- 'settle' and 'done' come from claim.lua, which the caller asks once this returns 'empty').
--!include _batch_writes
--!include _claim_gate
local meta, rlist, status, detail, inflight, retry, counts, lock, qmeta =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local token, prefix, now, worker, lease = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local hcap, dcap = tonumber(ARGV[6]), tonumber(ARGV[7])
local lane, lanes, want = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local stop, total, cursor, cursor_field = claim_gate(meta, lock, qmeta, token, now, lane)
if stop then return stop end
local has_work = cursor < total or redis.call('ZCARD', retry) > 0
if not has_work then return {'empty'} end
local cool = tonumber(redis.call('GET', KEYS[15]) or '0')
if now < cool then return {'cooling', cool} end

-- The caps are sliding windows: claim no more than what is left of the tighter one.
local capped = hcap >= 0 or dcap >= 0
if capped then
  local win = KEYS[14]
  redis.call('ZREMRANGEBYSCORE', win, '-inf', now - 86400000)
  if dcap >= 0 then
    local used = redis.call('ZCARD', win)
    if used >= dcap then
      local first = redis.call('ZRANGE', win, 0, 0, 'WITHSCORES')
      local reopen = now + 60000
      if #first > 0 then reopen = tonumber(first[2]) + 86400000 end
      return {'capped', reopen, 'daily'}
    end
    want = math.min(want, dcap - used)
  end
  if hcap >= 0 then
    local used = redis.call('ZCOUNT', win, now - 3600000, '+inf')
    if used >= hcap then
      local first = redis.call('ZRANGEBYSCORE', win, now - 3600000, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
      local reopen = now + 60000
      if #first > 0 then reopen = tonumber(first[2]) + 3600000 end
      return {'capped', reopen, 'hourly'}
    end
    want = math.min(want, hcap - used)
  end
end

-- Due retries first, then pending recipients in request order.
local picked, packs, olds = {}, {}, {}
local due = redis.call('ZRANGEBYSCORE', retry, '-inf', now, 'LIMIT', 0, want)
if #due > 0 then
  redis.call('ZREM', retry, unpack(due))
  for _, field in ipairs(due) do
    local idx = tonumber(field)
    picked[#picked + 1] = idx
    packs[#packs + 1] = redis.call('LINDEX', rlist, idx)
    olds[#olds + 1] = redis.call('GETRANGE', status, idx, idx)
  end
end

-- Pending ones: read the status string a chunk at a time, and the chunk's recipients with one
-- LRANGE (LINDEX walks the list from an end, once per call).
local start = cursor
while #picked < want and cursor < total do
  local span = math.min(total - cursor, (want - #picked) * lanes)
  local codes = redis.call('GETRANGE', status, cursor, cursor + span - 1)
  local chunk = {}
  local first, last = nil, nil
  local off = 0
  while off < span and #picked + #chunk < want do
    if string.byte(codes, off + 1) == 80 then -- 'P'
      chunk[#chunk + 1] = cursor + off
      first = first or (cursor + off)
      last = cursor + off
    end
    off = off + lanes
  end
  if first ~= nil then
    local rows = redis.call('LRANGE', rlist, first, last)
    for _, idx in ipairs(chunk) do
      picked[#picked + 1] = idx
      packs[#packs + 1] = rows[idx - first + 1]
      olds[#olds + 1] = 'P'
    end
  end
  cursor = cursor + off
end
if cursor ~= start then redis.call('HSET', meta, cursor_field, cursor) end

if #picked == 0 then
  local nxt = redis.call('ZRANGE', retry, 0, 0, 'WITHSCORES')
  if #nxt > 0 then return {'wait', nxt[2]} end
  return {'empty'}
end

-- Numbers that opted out since the campaign was queued are closed as suppressed, never sent.
local blocked = {}
if redis.call('SCARD', KEYS[12]) > 0 then
  local phones = {}
  for i, packed in ipairs(packs) do phones[i] = string.match(packed, '^%["([^"]+)"') end
  blocked = redis.call('SMISMEMBER', KEYS[12], unpack(phones))
end

local delta, moves = {}, {}
local function move(from, to)
  delta[from] = (delta[from] or 0) - 1
  delta[to] = (delta[to] or 0) + 1
  moves[from .. to] = (moves[from .. to] or 0) + 1
end
local prior = redis.call('HMGET', detail, unpack(picked))
local fresh_tail = '","w":' .. cjson.encode(worker) .. ',"ts":' .. string.format('%.0f', now) ..
  ',"lease":' .. string.format('%.0f', now + lease) .. '}'
local out = {'claimed'}
local details, flights, window, indexed = {}, {}, {}, {}
local index_ttl = tonumber(ARGV[11] or '0')
local mark_idx, mark_code = {}, {} -- status bytes to write, one SETRANGE per run of indexes
local suppressed = 0
for i, idx in ipairs(picked) do
  if blocked[i] == 1 then
    mark_idx[#mark_idx + 1], mark_code[#mark_code + 1] = idx, 'Z'
    move(olds[i], 'Z')
    suppressed = suppressed + 1
  else
    local attempt = prefix .. '.' .. idx
    local tries, encoded = 1, nil
    if prior[i] then
      local rec = cjson.decode(prior[i])
      rec['a'] = (rec['a'] or 0) + 1
      rec['id'] = attempt
      rec['w'] = worker
      rec['ts'] = now
      rec['lease'] = now + lease
      tries, encoded = rec['a'], cjson.encode(rec)
    else
      -- A first attempt: the same record claim.lua writes, built as text (cheaper than a
      -- table and cjson, once per recipient).
      encoded = '{"a":1,"id":"' .. attempt .. fresh_tail
    end
    mark_idx[#mark_idx + 1], mark_code[#mark_code + 1] = idx, 'S'
    move(olds[i], 'S')
    details[#details + 1] = idx
    details[#details + 1] = encoded
    flights[#flights + 1] = idx
    flights[#flights + 1] = attempt
    if index_ttl > 0 then
      indexed[#indexed + 1] = attempt
      indexed[#indexed + 1] = idx
    end
    if capped then
      window[#window + 1] = now
      window[#window + 1] = attempt
    end
    out[#out + 1] = idx
    out[#out + 1] = tries
    out[#out + 1] = packs[i]
  end
end
write_codes(status, mark_idx, mark_code)
apply_counts(meta, counts, delta, KEYS[13], moves)
if suppressed > 0 then redis.call('DECRBY', KEYS[13], suppressed) end
if #details == 0 then return {'early', now} end -- all opted out: come straight back
redis.call('HSET', detail, unpack(details))
redis.call('HSET', inflight, unpack(flights))
redis.call('SET', KEYS[11], now)
if capped then redis.call('ZADD', KEYS[14], unpack(window)) end
if index_ttl > 0 then
  redis.call('HSET', KEYS[16], unpack(indexed))
  redis.call('PEXPIRE', KEYS[16], index_ttl)
end
return out

-- A new owner of a campaign marks every send left in flight by a dead worker as unknown.
-- KEYS: 1 meta, 2 status, 3 detail, 4 inflight, 5 message counts, 6 job lock, 7 unsettled,
--       8.. the backlog of each lane's account (lane = index mod their count)
-- ARGV: 1 lock token ('' = none), 2 now ms
-- Returns a flat list {index, attempt id, lease end ms, ...} of the recipients marked unknown.
--!include _account_messages
local meta, status, detail, inflight, counts, lock, unsettled =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local lanes = #KEYS - 7
if ARGV[1] ~= '' and redis.call('GET', lock) ~= ARGV[1] then return -1 end
local now = tonumber(ARGV[2])
local out = {}
local entries = redis.call('HGETALL', inflight)
for i = 1, #entries, 2 do
  local idx = tonumber(entries[i])
  if redis.call('GETRANGE', status, idx, idx) == 'S' then
    local rec = cjson.decode(redis.call('HGET', detail, idx))
    redis.call('SETRANGE', status, idx, 'U')
    redis.call('HINCRBY', meta, 'n:S', -1)
    redis.call('HINCRBY', meta, 'n:U', 1)
    redis.call('HINCRBY', counts, 'S', -1)
    redis.call('HINCRBY', counts, 'U', 1)
    redis.call('DECR', KEYS[8 + idx % lanes])
    redis.call('HINCRBY', account_messages(KEYS[8 + idx % lanes]), 'SU', 1)
    rec['st'] = 'U'
    rec['tU'] = now
    rec['e'] = 'worker_lost'
    rec['r'] = 'the worker stopped during the send; outcome not known'
    redis.call('HSET', detail, idx, cjson.encode(rec))
    redis.call('ZADD', unsettled, rec['lease'] or now, idx)
    table.insert(out, idx)
    table.insert(out, rec['id'])
    table.insert(out, rec['lease'] or now)
  end
end
redis.call('DEL', inflight)
return out

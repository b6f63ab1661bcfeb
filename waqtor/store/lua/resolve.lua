-- An operator settles one unknown recipient: mark it sent, or send it again on purpose.
-- KEYS: 1 meta, 2 status, 3 detail, 4 retry, 5 message counts, 6 account backlog, 7 unsettled
-- ARGV: 1 index, 2 action ('sent' or 'resend'), 3 now ms, 4 message id (optional)
-- Returns 1 if applied, 0 if the recipient is not unknown.
--!include _account_messages
local meta, status, detail, retry, counts, backlog, unsettled =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local idx, action, now = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
if redis.call('GETRANGE', status, idx, idx) ~= 'U' then return 0 end
local raw = redis.call('HGET', detail, idx)
local rec = {}
if raw then rec = cjson.decode(raw) end
local new = 'D'
if action == 'resend' then new = 'R' end
redis.call('SETRANGE', status, idx, new)
redis.call('HINCRBY', meta, 'n:U', -1)
redis.call('HINCRBY', meta, 'n:' .. new, 1)
redis.call('HINCRBY', counts, 'U', -1)
redis.call('HINCRBY', counts, new, 1)
redis.call('HINCRBY', account_messages(backlog), 'U' .. new, 1)
redis.call('ZREM', unsettled, idx)
rec['st'] = new
rec['t' .. new] = now
rec['op'] = action
if new == 'D' then
  if ARGV[4] ~= '' then rec['m'] = ARGV[4] end
  rec['e'] = nil; rec['r'] = nil
else
  rec['a'] = 0
  redis.call('ZADD', retry, now, idx)
  redis.call('INCR', backlog)
end
redis.call('HSET', detail, idx, cjson.encode(rec))
return 1

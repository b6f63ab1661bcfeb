-- Shared by claim.lua and claim_batch.lua (scripts.py puts it where "--!include _claim_gate"
-- stands): may this lane of the campaign send now at all?
-- Returns a stop reply ({'lost'}, {'canceled'}, {'expired'}, {'paused'}, {'paused_queue'}),
-- or nil with the lane's total recipients and cursor.
local function claim_gate(meta, lock, qmeta, token, now, lane)
  local cursor_field = 'cursor'
  if lane > 0 then cursor_field = 'cursor:' .. lane end
  -- A worker that lost its job's lock (stalled, taken over) must not send: the new owner does.
  if token ~= '' and redis.call('GET', lock) ~= token then return {'lost'} end
  local flags = redis.call('HMGET', meta, 'canceled', 'paused', 'total', cursor_field, 'expires_ms')
  if flags[1] == '1' then return {'canceled'} end
  -- Past its validUntil a campaign sends nothing more: late is worse than never.
  if flags[5] and now > tonumber(flags[5]) then return {'expired'} end
  if flags[2] == '1' then return {'paused'} end
  if redis.call('HEXISTS', qmeta, 'paused') == 1 then return {'paused_queue'} end
  return nil, tonumber(flags[3] or '0'), tonumber(flags[4] or lane), cursor_field
end

-- One chunk of the reconciler's look at every stored campaign (read only, one moment).
-- KEYS: 1 campaigns index (sorted set), 2 jobs index (sorted set), 3 the missing-job hash
-- ARGV: 1 first rank, 2 how many, 3 head of a campaign's meta key (keys.meta(cid) = head..cid),
--       4 head of a bullmq job hash (keys.job_hash), 5 status key suffix, 6 lease key suffix
-- Key names are built here from ARGV (as queue_stats.lua does for cool-downs): the set of
-- campaigns is only known inside Redis.
-- Returns {{campaigns whose job is missing}, {campaigns whose job is back}, {account, open
-- recipients, ...} summed over the chunk, ids read}.
-- "Missing" leaves out what has no job by design: an instant send that is done, or that its
-- live request is still sending (its lease), and campaigns the reconciler already closed.
local ids = redis.call('ZRANGE', KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[1]) + tonumber(ARGV[2]) - 1)
local head, job_head, status_tail, lease_tail = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local missing, back, open_by = {}, {}, {}
local function add(account, n)
  if n > 0 then open_by[account] = (open_by[account] or 0) + n end
end
for _, cid in ipairs(ids) do
  local meta = head .. cid
  local f = redis.call('HMGET', meta, 'mode', 'orphaned', 'n:P', 'n:R', 'n:S', 'accounts', 'account')
  local open = tonumber(f[3] or '0') + tonumber(f[4] or '0') + tonumber(f[5] or '0')
  if open > 0 then
    local accounts = nil
    if f[6] then
      local ok, decoded = pcall(cjson.decode, f[6])
      if ok and type(decoded) == 'table' and #decoded > 0 then accounts = decoded end
    end
    accounts = accounts or {f[7] or 'default'}
    if #accounts == 1 then
      add(accounts[1], open)
    else
      local s = redis.call('GET', meta .. status_tail) or ''
      local lanes, per = #accounts, {}
      for i = 1, #s do
        local c = string.sub(s, i, i)
        if c == 'P' or c == 'R' or c == 'S' then
          local lane = (i - 1) % lanes + 1
          per[lane] = (per[lane] or 0) + 1
        end
      end
      for lane, n in pairs(per) do add(accounts[lane], n) end
    end
  end
  if redis.call('EXISTS', job_head .. cid) == 1 then
    if redis.call('HEXISTS', KEYS[3], cid) == 1 then back[#back + 1] = cid end
  elseif f[1] and not f[2] then
    local expected = f[1] ~= 'instant' or redis.call('ZSCORE', KEYS[2], cid)
    if expected or (open > 0 and redis.call('EXISTS', meta .. lease_tail) == 0) then
      missing[#missing + 1] = cid
    end
  end
end
local flat = {}
for account, n in pairs(open_by) do
  flat[#flat + 1] = account
  flat[#flat + 1] = n
end
return {missing, back, flat, #ids}

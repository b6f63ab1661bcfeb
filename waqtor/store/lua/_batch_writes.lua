-- Shared by the batch scripts: scripts.py puts this file where a script says
-- "--!include _batch_writes". (EVAL scripts cannot load a library of their own.)

-- Status bytes: one SETRANGE per run of consecutive indexes (a batch is mostly one run).
local function write_codes(status, idxs, codes)
  local m = 1
  while m <= #idxs do
    local j = m
    while j < #idxs and idxs[j + 1] == idxs[j] + 1 do j = j + 1 end
    redis.call('SETRANGE', status, idxs[m], table.concat(codes, '', m, j))
    m = j + 1
  end
end

--!include _account_messages

-- Recipients per status code, changed by delta[code], in the campaign and over all campaigns;
-- on the lane's account (named by its backlog key), moves[from .. to] recipients moved: one
-- HINCRBY per kind of move (a batch is mostly one, such as sending -> sent).
local function apply_counts(meta, counts, delta, backlog, moves)
  for code, d in pairs(delta) do
    if d ~= 0 then
      redis.call('HINCRBY', meta, 'n:' .. code, d)
      redis.call('HINCRBY', counts, code, d)
    end
  end
  local per_account = account_messages(backlog)
  for move, n in pairs(moves) do redis.call('HINCRBY', per_account, move, n) end
end

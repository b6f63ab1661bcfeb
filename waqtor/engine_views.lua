--[[
  Jobs for a list (``Engine.views``): the queue's pause flag, then each job's hash and its
  state, in one call instead of a pipeline of bullmq's getState script per job.

  The state is bullmq's getStateV2 (commands/getStateV2-8.lua), the same checks in the same
  order, so a job that sits in two of bullmq's lists or sets is named as bullmq names it.

  KEYS[1]     the queue's meta hash
  KEYS[2..9]  completed, failed, delayed, active, wait, paused, waiting-children, prioritized
  KEYS[9+i]   job i's hash
  ARGV[i]     job i's id
  Returns {pause flag (0/1), state 1, hash 1 (flat), state 2, hash 2, ...}; a job with no hash
  (or a key that is no hash) has state "" and an empty hash, and costs no state read.
]]
local rcall = redis.call
local completed, failed, delayed, active = KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local wait, paused, children, prioritized = KEYS[6], KEYS[7], KEYS[8], KEYS[9]

local function state(id)
  if rcall("ZSCORE", completed, id) then return "completed" end
  if rcall("ZSCORE", failed, id) then return "failed" end
  if rcall("ZSCORE", delayed, id) then return "delayed" end
  if rcall("ZSCORE", prioritized, id) then return "prioritized" end
  if rcall("LPOS", active, id) then return "active" end
  if rcall("LPOS", wait, id) then return "waiting" end
  if rcall("LPOS", paused, id) then return "waiting" end
  if rcall("ZSCORE", children, id) then return "waiting-children" end
  return "unknown"
end

local reply = {rcall("HEXISTS", KEYS[1], "paused")}
for i = 1, #ARGV do
  local hash = redis.pcall("HGETALL", KEYS[9 + i])
  if type(hash) ~= "table" or hash.err or #hash == 0 then
    reply[#reply + 1] = ""
    reply[#reply + 1] = {}
  else
    reply[#reply + 1] = state(ARGV[i])
    reply[#reply + 1] = hash
  end
end
return reply

-- Shared (scripts.py puts it where "--!include _account_messages"): an account's recipients
-- by status (keys.account_messages), named from the account's backlog key (keys.backlog,
-- ending in 'backlog' where this one ends in 'msgs'), which every script that changes a
-- status already holds in its KEYS.
local function account_messages(backlog)
  return string.sub(backlog, 1, -8) .. 'msgs'
end

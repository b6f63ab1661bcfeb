-- Start a dashboard session: remember it under the key's current generation, so "log out
-- everywhere" (which bumps the generation) ends it with the others.
-- KEYS: 1 the session, 2 the key's session generation
-- ARGV: 1 key fingerprint, 2 lifetime (ms)
local gen = redis.call('GET', KEYS[2]) or '0'
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. gen, 'PX', ARGV[2])
return gen

-- Release an Idempotency-Key whose request failed before it answered, unless another request
-- holds it by now. KEYS: 1 the stored response   ARGV: 1 the pending token this request wrote
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0

-- bind_idempotency: binds an Idempotency-Key to the one request it was first
-- used for, across events and routes. Standalone (no prelude).
-- KEYS[1]: the binding (string)
-- ARGV[1]: the request, as `v1\n<route>\n<event>\n<fingerprint>`
-- ARGV[2]: time to keep it, in seconds
-- Returns 1 when the key is free or already bound to this request (its time
-- starts again: the binding outlives the answer the event keeps for it),
-- 0 when it is bound to another request. A binding this version cannot read
-- (another format, another type) binds nothing: it is replaced, and the
-- event's own record still refuses a key reused there with another body.
local bound = redis.pcall('GET', KEYS[1])
if type(bound) == 'string' and bound ~= ARGV[1] and string.sub(bound, 1, 3) == 'v1\n' then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1

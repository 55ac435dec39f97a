-- release_expired: releases holds whose deadline has passed, oldest first,
-- and reports the event's exact counts afterwards. Used by the release worker
-- and before every count or listing.
-- KEYS[1..8]: the event's keys (see lib.lua)
-- ARGV[1]: at most this many holds released in this call
-- Returns: { released, nextDeadlineMs (-1: none scheduled), nowMs, capacity, held, sold,
--            ttl_ms, max_per_hold }
--        | { 'not_found' } | { 'schema', v }
local meta, err = load_meta()
if not meta then return err end
local now = now_ms()
local released, next_deadline = sweep(now, tonumber(ARGV[1]))
local m = redis.call('HMGET', K.meta, 'held', 'sold')
return { released, next_deadline, now, meta.capacity, tonumber(m[1]), tonumber(m[2]),
         meta.ttl_ms, meta.max_per_hold }

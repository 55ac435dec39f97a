-- release_expired: releases holds whose deadline has passed, oldest first,
-- and reports the event's exact counts afterwards. Used by the release worker
-- and before every count or listing.
-- KEYS[1..9]: the event's keys (see lib.lua)
-- ARGV[1]: at most this many holds released in this call
-- ARGV[2]: '1' to return the lateness of each release
-- Returns: { released, nextDeadlineMs (-1: none scheduled), nowMs, capacity, held, sold,
--            ttl_ms, max_per_hold, lag1Ms, lag2Ms, .. }
--        | { 'not_found' } | { 'schema', v } | { 'damaged', what }
local meta, err = load_meta()
if not meta then return err end
local now = now_ms()
local lags = ARGV[2] == '1' and {} or nil
local released, next_deadline = sweep(now, tonumber(ARGV[1]), lags)
local m = redis.call('HMGET', K.meta, 'held', 'sold')
local reply = { released, next_deadline, now, meta.capacity, tonumber(m[1]), tonumber(m[2]),
                meta.ttl_ms, meta.max_per_hold }
for _, l in ipairs(lags or {}) do reply[#reply + 1] = l end
return reply

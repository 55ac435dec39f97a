-- create_event: creates an event with all tickets available, or compares the
-- settings of the existing one.
-- KEYS[1..9]: the event's keys (see lib.lua)
-- ARGV[1]: capacity   ARGV[2]: hold time in ms   ARGV[3]: max tickets per hold
-- ARGV[4]: the job stream's consumer group
-- Returns: { 'created'|'exists'|'conflict', capacity, ttl_ms, max_per_hold }
--        | { 'schema', v } | { 'damaged', what } (see load_meta)
local cap, ttl, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local meta, err = load_meta()
if meta then
  local same = meta.capacity == cap and meta.ttl_ms == ttl and meta.max_per_hold == max
  return { same and 'exists' or 'conflict', meta.capacity, meta.ttl_ms, meta.max_per_hold }
end
if err[1] ~= 'not_found' then return err end
-- Leftovers of an event that was deleted by hand would corrupt the counts.
redis.call('DEL', K.taken, K.sold, K.owner, K.holds, K.sched, K.orders, K.jobs, K.uholds)
redis.call('HSET', K.meta, 'capacity', cap, 'ttl_ms', ttl, 'max_per_hold', max,
  'held', 0, 'sold', 0, 'seq', 0, 'hint', 1, 'v', SCHEMA)
-- Bit 0 is no ticket. Writing the whole bitmap once sizes it exactly (SETBIT
-- would over-allocate while growing) and keeps BITPOS within the string.
redis.call('SET', K.taken, '\128' .. string.rep('\0', math.floor(cap / 8)))
redis.call('XGROUP', 'CREATE', K.jobs, ARGV[4], '0', 'MKSTREAM')
return { 'created', cap, ttl, max }

-- create_event: creates an event with all tickets available, or compares the
-- settings of the existing one.
-- KEYS[1..9]: the event's keys (see lib.lua)
-- ARGV[1]: capacity   ARGV[2]: hold time in ms   ARGV[3]: max tickets per hold
-- ARGV[4]: the job stream's consumer group
-- ARGV[5]: currency   ARGV[6]: sections 'id:capacity:price,..' ('': one section 'general' at 0)
-- ARGV[7]: sales start ms ('': none)   ARGV[8]: sales end ms ('': none)
-- ARGV[9]: max tickets per user (0: no limit)   ARGV[10]: max extensions per hold
-- ARGV[11]: waiting room 'maxActive|admissionMs' ('' or absent: none)
-- Returns: { 'created'|'exists'|'conflict', capacity, ttl_ms, max_per_hold, currency, sections,
--            sales_start|'', sales_end|'', max_user, max_ext, queue|'' }
--        | { 'schema', v } | { 'damaged', what } (see load_meta)
local cap, ttl, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local currency, secs, start_ms, end_ms, max_user, max_ext =
  ARGV[5], ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
local queue = ARGV[11] or ''
local meta, err = load_meta()
local function opt(n) return n and fmt_int(n) or '' end
if meta then
  local have = { meta.capacity, meta.ttl_ms, meta.max_per_hold, meta.currency, meta.sections_text or '',
                 opt(meta.sales_start), opt(meta.sales_end), meta.max_user, meta.max_ext,
                 meta.queue_max and (fmt_int(meta.queue_max) .. '|' .. fmt_int(meta.queue_ms)) or '' }
  local want = { cap, ttl, max, currency, secs, start_ms, end_ms, max_user, max_ext, queue }
  local same = true
  for i = 1, #want do
    if have[i] ~= want[i] then same = false end
  end
  local reply = { same and 'exists' or 'conflict' }
  for _, v in ipairs(have) do reply[#reply + 1] = v end
  return reply
end
if err[1] ~= 'not_found' then return err end
-- Leftovers of an event that was deleted by hand would corrupt the counts.
redis.call('DEL', K.taken, K.sold, K.owner, K.holds, K.sched, K.orders, K.jobs, K.uholds, K.utix, K.due)
redis.call('HSET', K.meta, 'capacity', cap, 'ttl_ms', ttl, 'max_per_hold', max,
  'held', 0, 'sold', 0, 'seq', 0, 'hint', 1, 'v', SCHEMA)
if secs ~= '' then redis.call('HSET', K.meta, 'sections', secs) end
if queue ~= '' then
  redis.call('HSET', K.meta, 'queue', queue)
  redis.call('DEL', TAG .. 'q', TAG .. 'qu', TAG .. 'qa')
end
-- Only an event with settings other than the defaults has a `sell` field.
local sell = sell_text(currency, max_user, tonumber(start_ms), tonumber(end_ms), max_ext)
if sell then redis.call('HSET', K.meta, 'sell', sell) end
settings_changed()
-- Bit 0 is no ticket. Writing the whole bitmap once sizes it exactly (SETBIT
-- would over-allocate while growing) and keeps BITPOS within the string.
redis.call('SET', K.taken, '\128' .. string.rep('\0', math.floor(cap / 8)))
redis.call('XGROUP', 'CREATE', K.jobs, ARGV[4], '0', 'MKSTREAM')
return { 'created', cap, ttl, max, currency, secs, start_ms, end_ms, max_user, max_ext, queue }

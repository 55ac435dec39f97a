-- patch_event: changes settings of an event; they apply to holds made after
-- the change (a hold keeps its deadline and its amount). Capacity and the
-- sections' ranges never change.
-- KEYS[1..9]: the event's keys (see lib.lua)
-- ARGV: pairs of setting and value: 'sales_start' | 'sales_end' (ms, or ''
--       to remove), 'max_user', 'max_ext', 'ttl_ms', 'max_per_hold'
--       (integers), 'price:<sectionId>' (minor units), 'queue'
--       ('enabled|maxActive|admissionMs', each empty to keep it as it is:
--       enabled '1' or '0'; a room put on an event that had none starts
--       empty, with the defaults for what is left out)
-- A per-user limit set where there was none does not apply at once: the
-- tickets held and bought before it were not counted, so the change starts
-- a recount (field `recount` = 'nextSeq|lastSeq|limit'; holds are counted
-- meanwhile) that recount_buyers.lua finishes, and the limit applies then.
-- Returns: { 'ok' } | { 'recount' } (then call recount_buyers until done)
--        | { 'no_section', id } | { 'invalid', message }
--        | { 'not_found' } | { 'schema', v } | { 'damaged', what }
local meta, err = load_meta()
if not meta then return err end
local list = sections()
local prices, sets, limit_asked, queue_asked = false, {}, false, nil
local sell = { max_user = meta.max_user, max_ext = meta.max_ext, sales_start = meta.sales_start,
               sales_end = meta.sales_end }
for i = 1, #ARGV, 2 do
  local field, value = ARGV[i], ARGV[i + 1]
  local sid = string.match(field, '^price:(.+)$')
  if sid then
    local found = false
    for _, x in ipairs(list) do
      if x.id == sid then x.price = tonumber(value); found = true end
    end
    if not found then return { 'no_section', sid } end
    prices = true
  elseif field == 'ttl_ms' and tonumber(value) ~= meta.ttl_ms then
    -- Holds made from now on may have deadlines before those already in
    -- the list schedule: those go to `due` until their deadlines pass the
    -- latest one the list may hold.
    local floor = now_ms() + meta.ttl_ms
    if meta.sched_floor and meta.sched_floor > floor then floor = meta.sched_floor end
    sets[#sets + 1] = 'ttl_ms'; sets[#sets + 1] = value
    sets[#sets + 1] = 'sched_floor'; sets[#sets + 1] = fmt_int(floor)
  elseif field == 'queue' then
    queue_asked = value
  elseif field == 'ttl_ms' or field == 'max_per_hold' then
    sets[#sets + 1] = field; sets[#sets + 1] = value
  elseif field == 'max_user' or field == 'max_ext' then
    sell[field] = tonumber(value)
    if field == 'max_user' then limit_asked = true end
  else
    sell[field] = value ~= '' and tonumber(value) or nil
  end
end
if sell.sales_start and sell.sales_end and sell.sales_start >= sell.sales_end then
  return { 'invalid', 'salesStart must be before salesEnd' }
end
if prices then
  local parts = {}
  for _, x in ipairs(list) do
    parts[#parts + 1] = x.id .. ':' .. fmt_int(x.capacity) .. ':' .. fmt_int(x.price)
  end
  sets[#sets + 1] = 'sections'; sets[#sets + 1] = table.concat(parts, ',')
end
-- The per-user limit: at once, or after a recount (see above).
local counting, recount = meta.counting, nil
local pending = redis.call('HGET', K.meta, 'recount')
if limit_asked then
  if sell.max_user == 0 then
    counting = false
    if pending then redis.call('HDEL', K.meta, 'recount') end
  elseif pending then
    -- A recount is under way: it will apply this limit.
    local from, to = string.match(pending, '^(%d+)|(%d+)|')
    recount = from .. '|' .. to .. '|' .. fmt_int(sell.max_user)
    sell.max_user = 0
  elseif meta.max_user == 0 and not meta.counting and meta.seq > 0 then
    recount = '1|' .. fmt_int(meta.seq) .. '|' .. fmt_int(sell.max_user)
    sell.max_user, counting = 0, true
  end
elseif pending then
  sell.max_user = 0
end
if recount then sets[#sets + 1] = 'recount'; sets[#sets + 1] = recount end
if queue_asked then
  local on, active, admission = string.match(queue_asked, '^([01]?)|(%d*)|(%d*)$')
  if not on then return { 'invalid', 'queue: ' .. queue_asked } end
  if on == '0' or (on == '' and not meta.queue_max) then
    -- Off (or left off): nothing else to keep.
    if meta.queue_max then redis.call('HDEL', K.meta, 'queue') end
  else
    if active == '' then active = fmt_int(meta.queue_max or 1000) end
    if admission == '' then admission = fmt_int(meta.queue_ms or 600000) end
    if not meta.queue_max then redis.call('DEL', TAG .. 'q', TAG .. 'qu', TAG .. 'qa') end
    sets[#sets + 1] = 'queue'; sets[#sets + 1] = active .. '|' .. admission
  end
end
write_sell(meta.currency, sell.max_user, sell.sales_start, sell.sales_end, sell.max_ext, counting)
if #sets > 0 then redis.call('HSET', K.meta, unpack(sets)) end
if recount or (pending and counting) then return { 'recount' } end
return { 'ok' }

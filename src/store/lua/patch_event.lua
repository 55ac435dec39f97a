-- patch_event: changes settings of an event; they apply to holds made after
-- the change (a hold keeps its deadline and its amount). Capacity and the
-- sections' ranges never change.
-- KEYS[1..9]: the event's keys (see lib.lua)
-- ARGV: pairs of setting and value: 'sales_start' | 'sales_end' (ms, or ''
--       to remove), 'max_user', 'max_ext', 'ttl_ms', 'max_per_hold'
--       (integers), 'price:<sectionId>' (minor units)
-- Returns: { 'ok' } | { 'no_section', id } | { 'invalid', message }
--        | { 'not_found' } | { 'schema', v } | { 'damaged', what }
local meta, err = load_meta()
if not meta then return err end
local list = sections()
local prices, sets = false, {}
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
  elseif field == 'ttl_ms' or field == 'max_per_hold' then
    sets[#sets + 1] = field; sets[#sets + 1] = value
  elseif field == 'max_user' or field == 'max_ext' then
    sell[field] = tonumber(value)
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
local text = sell_text(meta.currency, sell.max_user, sell.sales_start, sell.sales_end, sell.max_ext)
if text then
  sets[#sets + 1] = 'sell'; sets[#sets + 1] = text
else
  redis.call('HDEL', K.meta, 'sell')
end
if #sets > 0 then redis.call('HSET', K.meta, unpack(sets)) end
return { 'ok' }

-- patch_event: changes settings of an event; they apply to holds made after
-- the change (a hold keeps its deadline and its amount). Capacity and the
-- sections' ranges never change.
-- KEYS[1..11]: the event's keys (see lib.lua)
-- ARGV: pairs of setting and value: 'sales_start' | 'sales_end' (ms, or ''
--       to remove), 'max_user', 'max_ext', 'ttl_ms', 'max_per_hold'
--       (integers), 'price:<sectionId>' (minor units)
-- Returns: { 'ok' } | { 'no_section', id } | { 'invalid', message }
--        | { 'not_found' } | { 'schema', v } | { 'damaged', what }
local meta, err = load_meta()
if not meta then return err end
local list = sections()
local prices, sets, dels = false, {}, {}
local start_ms, end_ms = meta.sales_start, meta.sales_end
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
  elseif field == 'sales_start' or field == 'sales_end' then
    local v = value ~= '' and tonumber(value) or nil
    if field == 'sales_start' then start_ms = v else end_ms = v end
    if v then
      sets[#sets + 1] = field; sets[#sets + 1] = value
    else
      dels[#dels + 1] = field
    end
  else
    sets[#sets + 1] = field; sets[#sets + 1] = value
  end
end
if start_ms and end_ms and start_ms >= end_ms then
  return { 'invalid', 'salesStart must be before salesEnd' }
end
if prices then
  local parts = {}
  for _, x in ipairs(list) do
    parts[#parts + 1] = x.id .. ':' .. fmt_int(x.capacity) .. ':' .. fmt_int(x.price)
  end
  sets[#sets + 1] = 'sections'; sets[#sets + 1] = table.concat(parts, ',')
end
if #sets > 0 then redis.call('HSET', K.meta, unpack(sets)) end
if #dels > 0 then redis.call('HDEL', K.meta, unpack(dels)) end
return { 'ok' }

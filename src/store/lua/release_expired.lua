-- release_expired: releases holds whose deadline has passed, oldest first,
-- cancels orders whose payment deadline has passed (see expire_orders), and
-- reports the event's exact counts afterwards. Used by the release worker
-- and before every count or listing. The next deadline is the sooner of a
-- hold's and an order's.
-- KEYS[1..9]: the event's keys (see lib.lua)
-- ARGV[1]: at most this many holds released in this call
-- ARGV[2]: '1' to return the lateness of each release
-- ARGV[3]: a new random seed (24 hex digits): an event with a waiting room
--          gets a pass of it (see queue_tick), which opens the line with
--          this seed when sales open
-- Returns: { released, nextDeadlineMs (-1: none scheduled), nowMs, capacity, held, sold,
--            ttl_ms, max_per_hold, currency, salesStartMs (-1: none), salesEndMs (-1: none),
--            max_user, max_ext, orders by status (7: pending, completed, paid, cancelled,
--            refunded, refund_due, failed), sections n,
--            then 6 per section: id, firstTicket, lastTicket, price, held, sold,
--            then the waiting room ('maxActive|admissionMs', '' for none),
--            then lag1Ms, lag2Ms, .. }
--        | { 'not_found' } | { 'schema', v } | { 'damaged', what }
local meta, err = load_meta()
if not meta then return err end
local now = now_ms()
local lags = ARGV[2] == '1' and {} or nil
local released, next_deadline = sweep(now, tonumber(ARGV[1]), lags)
local _, next_due = expire_orders(meta, now, tonumber(ARGV[1]))
if next_due >= 0 and (next_deadline < 0 or next_due < next_deadline) then next_deadline = next_due end
if meta.queue_max and ARGV[3] then
  local st = queue_state()
  queue_open(meta, st, now, ARGV[3])
  queue_admit(meta, st, now)
  local q = queue_next(meta, st, now)
  if q >= 0 and (next_deadline < 0 or q < next_deadline) then next_deadline = q end
end
local m = redis.call('HMGET', K.meta, 'held', 'sold', 'orders', 'completed', 'paid', 'cancelled',
  'refunded', 'refund_due', 'failed')
local held, sold = tonumber(m[1]), tonumber(m[2])
local list = sections()
local reply = { released, next_deadline, now, meta.capacity, held, sold,
                meta.ttl_ms, meta.max_per_hold, meta.currency, meta.sales_start or -1,
                meta.sales_end or -1, meta.max_user, meta.max_ext }
-- Orders by status: pending is what the others leave of all orders.
local counted, pending = {}, tonumber(m[3] or '0') or 0
for i = 4, 9 do
  counted[i] = tonumber(m[i] or '0') or 0
  pending = pending - counted[i]
end
reply[#reply + 1] = math.max(pending, 0)
for i = 4, 9 do reply[#reply + 1] = counted[i] end
reply[#reply + 1] = #list
local counts = nil
if #list > 1 then
  local fields = {}
  for i = 1, #list do
    fields[#fields + 1] = 'held:' .. i
    fields[#fields + 1] = 'sold:' .. i
  end
  counts = redis.call('HMGET', K.meta, unpack(fields))
end
for i, x in ipairs(list) do
  reply[#reply + 1] = x.id
  reply[#reply + 1] = x.first
  reply[#reply + 1] = x.last
  reply[#reply + 1] = fmt_int(x.price)
  if counts then
    reply[#reply + 1] = tonumber(counts[2 * i - 1] or '0') or 0
    reply[#reply + 1] = tonumber(counts[2 * i] or '0') or 0
  else
    reply[#reply + 1] = held
    reply[#reply + 1] = sold
  end
end
reply[#reply + 1] = meta.queue_max and (fmt_int(meta.queue_max) .. '|' .. fmt_int(meta.queue_ms)) or ''
for _, l in ipairs(lags or {}) do reply[#reply + 1] = l end
return reply

-- recount_buyers: counts, toward each buyer's entry in utix, the tickets of
-- holds and orders made while the event had no per-user limit, a bounded
-- stretch of hold numbers per call, marking each record counted (':u') in
-- the same step so that none is counted twice and a release or purchase
-- of it later keeps the count right. The last call applies the limit the
-- recount was started for (see patch_event.lua). Holds made meanwhile are
-- counted by the hold script itself.
-- KEYS[1..9]: the event's keys (see lib.lua)
-- ARGV[1]: most hold numbers looked at in this call
-- Returns: { 'done' } | { 'more', nextSeq, lastSeq }
--        | { 'not_found' } | { 'schema', v } | { 'damaged', what }
local meta, err = load_meta()
if not meta then return err end
local pending = redis.call('HGET', K.meta, 'recount')
if not pending then return { 'done' } end
local from, to, limit = string.match(pending, '^(%d+)|(%d+)|(%d+)$')
if not from then return { 'damaged', K.meta .. ' field recount is "' .. pending .. '"' } end
from, to = tonumber(from), tonumber(to)
local upto = math.min(to, from + tonumber(ARGV[1]) - 1)
local seqs = {}
for s = from, upto do seqs[#seqs + 1] = fmt_int(s) end
if #seqs > 0 then
  local holds = redis.call('HMGET', K.holds, unpack(seqs))
  local orders = redis.call('HMGET', K.orders, unpack(seqs))
  for i, seq in ipairs(seqs) do
    local h = parse_hold(holds[i])
    if h and not h.counted then
      user_tickets_add(h.user, count_text(#h.tickets))
      redis.call('HSET', K.holds, seq, hold_record(h, true))
    end
    local o = parse_order(orders[i])
    if o and not o.counted and o.state ~= 'cancelled' and o.state ~= 'refunded'
      and o.state ~= 'refund_due' then
      o.counted = true
      user_tickets_add(o.user, count_text(#split_csv(o.csv)))
      redis.call('HSET', K.orders, seq, order_record(o, o.status, o.completed))
    end
  end
end
if upto < to then
  redis.call('HSET', K.meta, 'recount', fmt_int(upto + 1) .. '|' .. fmt_int(to) .. '|' .. limit)
  return { 'more', upto + 1, to }
end
-- Every record before the recount began is counted: the limit applies.
redis.call('HDEL', K.meta, 'recount')
write_sell(meta.currency, tonumber(limit), meta.sales_start, meta.sales_end, meta.max_ext, false)
return { 'done' }

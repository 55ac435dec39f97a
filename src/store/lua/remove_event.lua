-- remove_event: deletes a finished event's keys, once `event archive` has
-- written its orders out; or (ARGV[1] = 'check') only says whether it may.
-- Refused while tickets are held (a hold past its deadline too: work
-- release frees it), while orders are pending (not yet handed to the
-- sinks) or due a refund, and while orders wait for their payment deadline
-- (the list `paydue` is not empty: a result may still come for them). And
-- the orders hash must hold ARGV[2] orders, those written out: else an
-- order came or went meanwhile and the archive must read again.
-- KEYS[1..9]: the event's keys (see lib.lua)
-- Returns: { 'ok', orders } | { 'busy', why } | { 'changed', orders }
--        | { 'not_found' } | { 'schema', v } | { 'damaged', what }
local meta, err = load_meta()
if not meta then return err end
local function counter(f) return tonumber(redis.call('HGET', K.meta, f) or '0') or 0 end
if meta.held > 0 then
  return { 'busy', fmt_int(meta.held) .. ' tickets are held (holds past their deadline are freed by work release)' }
end
local settled = 0
for _, s in ipairs({ 'completed', 'paid', 'cancelled', 'refunded', 'refund_due', 'failed' }) do
  settled = settled + counter(s)
end
local pending = counter('orders') - settled
if pending > 0 then
  return { 'busy', fmt_int(pending) .. ' orders are pending (work purchase hands them to the sinks)' }
end
if counter('refund_due') > 0 then
  return { 'busy', fmt_int(counter('refund_due')) .. ' orders are due a refund' }
end
if redis.call('LLEN', TAG .. 'paydue') > 0 then
  return { 'busy', 'orders are within their payment deadline (work release settles them once it passes)' }
end
local n = redis.call('HLEN', K.orders)
if ARGV[1] == 'check' then return { 'ok', n } end
if tonumber(ARGV[2]) ~= n then return { 'changed', n } end
redis.call('DEL', K.meta, K.taken, K.sold, K.owner, K.holds, K.sched, K.orders, K.jobs, K.uholds,
  K.utix, K.due, TAG .. 'dead', TAG .. 'joberr', TAG .. 'pay', TAG .. 'paydue',
  TAG .. 'q', TAG .. 'qu', TAG .. 'qa')
return { 'ok', n }

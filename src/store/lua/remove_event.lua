-- remove_event: deletes a finished event's keys, once `event archive` has
-- written its orders out; or (ARGV[1] = 'check') only says whether it may.
-- Refused while tickets are held (a hold past its deadline too: work
-- release frees it), while orders are pending (not yet handed to the
-- sinks), while purchase jobs are queued or being worked on (a
-- cancellation or refund not yet published, say), while dead letters
-- remain (`dlq retry` or `dlq purge` decides them), and while orders wait
-- for their payment deadline (the list `paydue` is not empty). And the
-- orders hash must hold ARGV[2] orders, those written out, with the order
-- counters ARGV[3] the check answered: else an order came, went or
-- changed meanwhile and the archive must read again.
-- KEYS[1..9]: the event's keys (see lib.lua)
-- Returns: { 'ok', orders, counters } | { 'busy', why } | { 'changed', orders }
--        | { 'not_found' } | { 'schema', v } | { 'damaged', what }
local meta, err = load_meta()
if not meta then return err end
if meta.held > 0 then
  return { 'busy', fmt_int(meta.held) .. ' tickets are held (holds past their deadline are freed by work release)' }
end
-- Orders in all, then by every status but pending (what they leave).
local counts = redis.call('HMGET', K.meta, 'orders', 'completed', 'paid', 'cancelled', 'refunded',
  'refund_due', 'failed')
local settled = 0
for i = 1, #counts do
  counts[i] = tonumber(counts[i] or '0') or 0
  if i > 1 then settled = settled + counts[i] end
end
local pending = counts[1] - settled
for i = 1, #counts do counts[i] = fmt_int(counts[i]) end
local counters = table.concat(counts, '|')
if pending > 0 then
  return { 'busy', fmt_int(pending) .. ' orders are pending (work purchase hands them to the sinks)' }
end
-- Jobs: delivered and not acknowledged, or not delivered yet.
local function id_after(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if not am or not bm then return a ~= b end
  if tonumber(am) ~= tonumber(bm) then return tonumber(am) > tonumber(bm) end
  return tonumber(as) > tonumber(bs)
end
if redis.call('EXISTS', K.jobs) == 1 then
  local last = redis.call('XREVRANGE', K.jobs, '+', '-', 'COUNT', 1)[1]
  local delivered, busy = nil, 0
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', K.jobs)) do
    local f = {}
    for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
    if f['name'] == 'purchase' then delivered, busy = f['last-delivered-id'], tonumber(f['pending']) or 0 end
  end
  if busy > 0 then
    return { 'busy', fmt_int(busy) .. ' purchase jobs are being worked on (work purchase finishes them)' }
  end
  if last and (not delivered or id_after(last[1], delivered)) then
    return { 'busy', 'purchase jobs are queued (a cancellation or refund not yet published, say): work purchase hands them to the sinks' }
  end
end
local dead = redis.call('XLEN', TAG .. 'dead')
if dead > 0 then
  return { 'busy', fmt_int(dead) .. ' dead letters remain (dlq retry or dlq purge decides them)' }
end
if redis.call('LLEN', TAG .. 'paydue') > 0 then
  return { 'busy', 'orders are within their payment deadline (work release settles them once it passes)' }
end
local n = redis.call('HLEN', K.orders)
if ARGV[1] == 'check' then return { 'ok', n, counters } end
if tonumber(ARGV[2]) ~= n or ARGV[3] ~= counters then return { 'changed', n } end
redis.call('DEL', K.meta, K.taken, K.sold, K.owner, K.holds, K.sched, K.orders, K.jobs, K.uholds,
  K.utix, K.due, TAG .. 'dead', TAG .. 'joberr', TAG .. 'pay', TAG .. 'paydue',
  TAG .. 'q', TAG .. 'qu', TAG .. 'qa')
return { 'ok', n, counters }

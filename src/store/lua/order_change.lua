-- order_change: what happens to an order after its purchase: a payment
-- result, an operator's cancel, or its payment deadline. One order, decided
-- in one step against its current status, so that results arriving more
-- than once and in any order, the worker completing it, the deadline and a
-- cancel always end in one state with each ticket counted once (the table
-- in docs/api.md, "After the purchase").
-- KEYS[1..9]: the event's keys (see lib.lua)
-- ARGV[1]: order seq   ARGV[2]: order secret
-- ARGV[3]: 'paid' | 'declined' (a payment result) | 'cancel' (operator)
--          | 'timeout' (the payment deadline passed)
-- ARGV[4]: payment reference   ARGV[5]: amount the result names (minor units)
-- Returns: { 'ok', changed (1|0), seq, status, orderSecret, createdMs, completedMs|'', 't1,..',
--            userId, amount, currency } (as purchase.lua answers)
--        | { 'not_found' } | { 'order_state', status } | { 'amount_mismatch', amount }
--        | { 'schema', v } | { 'damaged', what }
-- A change to cancelled, refunded or refund_due queues a job with its
-- `type`, which the purchase worker publishes to every sink like a
-- purchase.
local meta, err = load_meta()
if not meta then return err end
local seq, secret, action, reference, amount = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local o = parse_order(redis.call('HGET', K.orders, seq))
if not o or o.secret ~= secret then return { 'not_found' } end
local status = o.state

local function answer(changed)
  return { 'ok', changed, tonumber(seq), o.status, o.secret, tonumber(o.created), o.completed, o.csv,
           o.user, o.amount_s, meta.currency }
end

if (action == 'paid' or action == 'declined') and amount ~= o.amount_s then
  return { 'amount_mismatch', o.amount_s }
end

-- Orders counted by status in meta (pending is what the others leave).
local COUNTED = { completed = 'completed', failed = 'failed', paid = 'paid', cancelled = 'cancelled',
                  refunded = 'refunded', refund_due = 'refund_due' }
local function set_status(new, reason)
  local old = COUNTED[status]
  if old then redis.call('HINCRBY', K.meta, old, -1) end
  redis.call('HINCRBY', K.meta, COUNTED[new], 1)
  o.status = reason and (new .. ':' .. reason) or new
  redis.call('HSET', K.orders, seq, order_record(o, o.status, o.completed))
end

local tickets = split_csv(o.csv)
local n_text = count_text(#tickets)

-- The order's tickets go back on sale, and back to its buyer's allowance.
local function give_back()
  local lowest
  for _, t in ipairs(tickets) do
    redis.call('SETBIT', K.sold, t, '0')
    redis.call('SETBIT', K.taken, t, '0')
    if not lowest or t < lowest then lowest = t end
  end
  redis.call('HINCRBY', K.meta, 'sold', '-' .. n_text)
  section_count(tickets, 'sold', -1, true)
  local hint = tonumber(redis.call('HGET', K.meta, 'hint') or '1')
  if lowest and lowest < hint then redis.call('HSET', K.meta, 'hint', lowest) end
  if o.counted then user_tickets_add(o.user, '-' .. n_text) end
end

-- A late payment: the tickets are sold to the order again when every one
-- of them is still free. Returns whether they were.
local function take_back()
  for _, t in ipairs(tickets) do
    if redis.call('GETBIT', K.taken, t) == 1 then return false end
  end
  for _, t in ipairs(tickets) do
    redis.call('SETBIT', K.taken, t, '1')
    redis.call('SETBIT', K.sold, t, '1')
  end
  redis.call('HINCRBY', K.meta, 'sold', n_text)
  section_count(tickets, 'sold', 1)
  if o.counted then user_tickets_add(o.user, n_text) end
  return true
end

-- A message for the sinks, as a job of the purchase worker.
local function publish(kind)
  redis.call('XADD', K.jobs, '*', 'seq', seq, 'secret', o.secret, 'userId', o.user, 'ticketIds', o.csv,
    'createdMs', o.created, 'amount', o.amount_s, 'currency', meta.currency, 'type', kind)
end

local function record_payment()
  redis.call('HSET', TAG .. 'pay', seq, action .. '|' .. fmt_int(now_ms()) .. '|' .. reference)
end

if action == 'paid' then
  if status == 'paid' or status == 'refund_due' then return answer(0) end
  if status == 'refunded' then return { 'order_state', status } end
  record_payment()
  if status == 'cancelled' then
    if take_back() then
      set_status('paid')
    else
      set_status('refund_due')
      publish('refund_due')
    end
  else
    -- pending, completed or failed: paid, and it stays paid.
    set_status('paid')
  end
elseif action == 'declined' then
  if status == 'cancelled' then return answer(0) end
  if status == 'paid' or status == 'refunded' or status == 'refund_due' then
    return { 'order_state', status }
  end
  record_payment()
  give_back()
  set_status('cancelled', 'declined')
  publish('cancelled')
else
  -- An operator's cancel, or the payment deadline.
  if status == 'cancelled' or status == 'refunded' or status == 'refund_due' then return answer(0) end
  if status == 'paid' then
    if action == 'timeout' then return answer(0) end
    give_back()
    set_status('refunded')
    publish('refunded')
  else
    give_back()
    set_status('cancelled', action == 'timeout' and 'payment_timeout' or 'operator')
    publish('cancelled')
  end
end
return answer(1)

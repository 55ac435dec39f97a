-- Orders prelude: added after lib.lua to the scripts that read or write
-- order records, act on a hold by one of its tickets, or call a command
-- with one answer per argument, so that the hold script does not carry it.

-- Like in_chunks, for a command answering one value per argument (HMGET,
-- ZMSCORE): returns its answers for the whole list, in order.
local function collect_in_chunks(list, f)
  local out = {}
  in_chunks(list, function(...)
    for _, v in ipairs(f(...)) do out[#out + 1] = v end
  end)
  return out
end

-- The currency of the event, for a script that did not load it.
local function currency_of_event()
  local sell = redis.call('HGET', K.meta, 'sell')
  return sell and string.sub(sell, 1, 3) or 'EUR'
end

-- A hold's record (as parse_hold reads it), `counted` or not.
local function hold_record(h, counted)
  local deadline = fmt_int(h.deadline)
  if h.ext > 0 then deadline = deadline .. '~' .. fmt_int(h.named) .. '~' .. fmt_int(h.ext) end
  return table.concat({ h.secret, deadline, h.csv .. price_field(h.amount_s, counted), h.user }, '|')
end

-- An order record (see lib.lua): its status is `pending`, `completed`,
-- `failed`, `paid`, `refunded`, `refund_due`, or `cancelled:<reason>`.
local function parse_order(rec)
  if not rec then return nil end
  local status, osecret, hsecret, created, completed, tickets, amount, counted, user =
    string.match(rec, '^([%a_:]+)|([^|]*)|([^|]*)|(%d+)|(%d*)|([%d,]*):?(%d*):?(u?)|(.*)$')
  if not status then return nil end
  -- `status` as written ('cancelled:declined'), `state` without the reason.
  return { status = status, state = string.match(status, '^[%a_]+'), secret = osecret, hold_secret = hsecret, created = created,
           completed = completed, csv = tickets, user = user, amount_s = amount ~= '' and amount or '0',
           counted = counted == 'u' }
end

-- An order's record (as parse_order reads it) with this status and
-- completion time ('' for none).
local function order_record(o, status, completed)
  return table.concat({ status, o.secret, o.hold_secret, o.created, completed,
                        o.csv .. price_field(o.amount_s, o.counted), o.user }, '|')
end

-- The hold holding ticket ARGV-text `arg` (the compatibility routes act by
-- ticket): its seq and record, or nil, nil and the reply to give.
local function hold_of_ticket(arg, meta)
  if tonumber(arg) > meta.capacity then
    return nil, nil, { 'invalid', 'ticketId ' .. arg .. ' is out of range 1..' .. meta.capacity }
  end
  local owner = redis.call('HGET', K.owner, tonumber(arg))
  local h = owner and parse_hold(redis.call('HGET', K.holds, owner))
  if not h then return nil, nil, { 'not_held' } end
  return tonumber(owner), h
end


-- What happens to an order after its purchase (see order_change.lua): one
-- order, decided against its current status. `meta` is the loaded event.
-- Returns the answer order_change.lua gives.
local function change_order(meta, seq, secret, action, reference, amount)
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
  -- of them is still free and its buyer's limit allows. Returns whether.
  local function take_back()
    for _, t in ipairs(tickets) do
      if redis.call('GETBIT', K.taken, t) == 1 then return false end
    end
    -- Nor may it take its buyer past maxTicketsPerUser.
    if o.counted and meta.max_user > 0 then
      local have = tonumber(redis.call('HGET', K.utix, o.user) or '0') or 0
      if have + #tickets > meta.max_user then return false end
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
        -- Its tickets are sold again: the sinks (fulfillment) learn of it.
        publish('paid')
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
end

-- Cancels (payment_timeout) the orders whose payment deadline has passed,
-- earliest first, at most `max`: the list `<tag>:paydue` holds
-- 'seq|dueMs' in creation order (one payment deadline for all), written by
-- the purchase script when a deadline is set. An order paid or cancelled
-- meanwhile is only dropped from it. Returns how many were cancelled and
-- the next due time (-1: none; `now`: more to do).
local function expire_orders(meta, now, max)
  local list = TAG .. 'paydue'
  local done = 0
  while true do
    local head = redis.call('LINDEX', list, 0)
    if not head then return done, -1 end
    local seq, due = string.match(head, '^(%d+)|(%d+)$')
    due = tonumber(due)
    if due and due > now then return done, due end
    if done >= max then return done, now end
    redis.call('LPOP', list)
    if seq then
      local o = parse_order(redis.call('HGET', K.orders, seq))
      if o and (o.state == 'pending' or o.state == 'completed' or o.state == 'failed') then
        change_order(meta, seq, o.secret, 'timeout', '', '')
        done = done + 1
      end
    end
  end
end

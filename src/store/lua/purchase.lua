-- purchase: turns live holds into sold tickets, an order and one purchase
-- job each, for one or more purchases of one event at once (the server
-- groups concurrent purchases; each succeeds or fails on its own). Buying
-- the same hold again returns the same order.
-- KEYS[1..9]: the event's keys (see lib.lua)
-- KEYS[10]: optional idempotency record (then exactly one purchase)
-- ARGV[1]: with KEYS[10], '<record ttl seconds>|<request fingerprint>' (see idem_arg)
-- ARGV[2]: payment deadline in ms ('0': none): each new order is listed in
--          <tag>:paydue with its due time, for release_expired to cancel it then
-- ARGV[3]: wake-up channel   ARGV[4]: event id (published when that list was empty)
-- Then six per purchase: 'h' (hold seq, hold secret, deadline named by the
-- holdId) or 't' (ticket id: the hold of this user that holds it, '', '');
-- then userId and the new order secret.
-- Returns { 'not_found' } | { 'schema', v } | { 'damaged', what } for the whole call, otherwise
-- one reply per purchase:
--          { 'ok', created (1|0), seq, status, orderSecret, createdMs, completedMs|'', 't1,..', userId,
--            amount, currency } (with KEYS[10]; without, the same as one string: see order_reply)
--        | { 'not_found' } | { 'forbidden' } | { 'expired' } | { 'not_held' }
--        | { 'expired', 1 }: the hold had expired and was released now
--        | { 'idem_mismatch' } | { 'invalid', message } (by ticket)
--        | { 'error', message }: the owner index disagrees with the hold, or
--          a key is damaged (nothing sold)
-- Every outcome but error is kept for an Idempotency-Key (created = 0 when
-- replayed).

-- The call's state, set at its start (the functions below are made once
-- where the scripts run as a library's functions; see hold.lua).
-- New orders' entries for the payment deadline ('seq|dueMs'), and the
-- counter changes, written once at the end.
local meta, now, now_s, pay_deadline, paydue, sold, orders
-- The holds bought by this call (seq -> true), and the owner entries and
-- hold records they leave, removed once at the end: a later purchase of
-- the call that meets one of them finds the hold bought.
local bought, gone_tickets, gone_holds

-- Without an Idempotency-Key (whose record keeps the array) the answer is
-- one string, far cheaper for Redis to send than an array of its fields:
-- 'ok|created|seq|status|orderSecret|createdMs|completedMs|t1,..|amount|currency|userId'.
local function order_reply(created, s, o)
  if not K.idem then
    return 'ok|' .. created .. '|' .. fmt_int(s) .. '|' .. o.status .. '|' .. o.secret .. '|' .. o.created
      .. '|' .. o.completed .. '|' .. o.csv .. '|' .. o.amount_s .. '|' .. meta.currency .. '|' .. o.user
  end
  return { 'ok', created, s, o.status, o.secret, tonumber(o.created), o.completed, o.csv, o.user,
           o.amount_s, meta.currency }
end

-- Takes back the sold bits of a purchase that failed on error `e`; its reply.
local function unsell(tickets, e)
  for _, t in ipairs(tickets) do redis.pcall('SETBIT', K.sold, t, '0') end
  return { 'error', error_text(e) }
end

-- One purchase: its reply, and the reply to store for a repeated key.
local function buy_one(kind, ref, hold_secret, named_deadline, user, order_secret)
  local seq, h
  if kind == 'h' then
    seq = tonumber(ref)
    h = parse_hold(redis.call('HGET', K.holds, ref))
    if h and bought[seq] then h = nil end
    if h and not names_hold(h, hold_secret, named_deadline) then return { 'not_found' } end
    if not h then
      local o = parse_order(redis.call('HGET', K.orders, ref))
      if o and o.hold_secret == hold_secret then
        if o.user ~= user then return { 'forbidden' } end
        return order_reply(0, seq, o)
      end
      if o then return { 'not_found' } end
      -- Gone without an order: it expired (and was released) or was
      -- cancelled. Its secret can no longer be checked, so only a hold
      -- number this event has issued counts as expired; any other id is
      -- unknown.
      if seq <= meta.seq and tonumber(named_deadline) <= now then return { 'expired' } end
      return { 'not_found' }
    end
    if h.user ~= user then return { 'forbidden' } end
  else
    local reply
    seq, h, reply = hold_of_ticket(ref, meta)
    if not h then return reply end
    if bought[seq] then return { 'not_held' } end
    if h.user ~= user then return { 'not_held' } end
  end

  if h.deadline <= now then
    free_hold(seq, h)
    count_expired(1)
    return { 'expired', 1 }, { 'expired' }
  end

  local tickets = {}
  for t in string.gmatch(h.csv, '[^,]+') do tickets[#tickets + 1] = t end
  -- Only tickets the owner index gives to this hold are sold: a damaged
  -- index must never sell a ticket another hold owns.
  local id = fmt_int(seq)
  local owners = redis.call('HMGET', K.owner, unpack(tickets))
  for i, t in ipairs(tickets) do
    if owners[i] ~= id then
      return { 'error', 'ticket ' .. t .. ' of hold ' .. id .. ' is not owned by it in ' .. K.owner }
    end
  end
  -- Redis keeps a script's writes when a command fails partway, so the
  -- writes that can fail (on a key damaged by hand) go first, each taken
  -- back if a later one fails: the sold bits, the order, its job. The keys
  -- written after them were read above, so they are hashes.
  local o = { status = 'pending', secret = order_secret, hold_secret = h.secret, created = now_s,
              completed = '', csv = h.csv, user = h.user, amount_s = h.amount_s, counted = h.counted }
  local r = redis.pcall('SETBIT', K.sold, tickets[1], '1')
  if type(r) == 'table' then return { 'error', error_text(r) } end
  for i = 2, #tickets do redis.call('SETBIT', K.sold, tickets[i], '1') end
  r = redis.pcall('HSET', K.orders, id, order_record(o, o.status, o.completed))
  if type(r) == 'table' then return unsell(tickets, r) end
  r = redis.pcall('XADD', K.jobs, '*', 'seq', id, 'secret', o.secret, 'userId', h.user,
    'ticketIds', h.csv, 'createdMs', o.created, 'amount', h.amount_s, 'currency', meta.currency)
  if type(r) == 'table' then
    redis.pcall('HDEL', K.orders, id)
    return unsell(tickets, r)
  end
  for _, t in ipairs(tickets) do gone_tickets[#gone_tickets + 1] = t end
  gone_holds[#gone_holds + 1] = id
  bought[seq] = true
  user_hold_done(h.user)
  section_count(tickets, 'held', -1)
  section_count(tickets, 'sold', 1)
  sold = sold + #tickets
  orders = orders + 1
  if pay_deadline > 0 then paydue[#paydue + 1] = id .. '|' .. fmt_int(now + pay_deadline) end
  -- Behind a waiting room the buyer's place is done: its slot goes to the
  -- next place at the room's next pass (see queue.lua).
  if meta.queue_max then
    local j = redis.call('HGET', TAG .. 'qu', h.user)
    if j then redis.call('ZREM', TAG .. 'qa', j) end
  end
  -- The reply kept for a repeated Idempotency-Key only when there is one.
  return order_reply(1, seq, o), K.idem and order_reply(0, seq, o) or nil
end


-- per call:
local fingerprint = ARGV[1]
local replay = idem_replay(fingerprint)
if replay then return { replay } end

local err
meta, err = load_meta()
if not meta then return err end
now = now_ms()
now_s = fmt_int(now)
pay_deadline, paydue = tonumber(ARGV[2]) or 0, {}
sold, orders = 0, 0
bought, gone_tickets, gone_holds = {}, {}, {}

local replies = {}
for i = 5, #ARGV, 6 do
  -- A purchase that fails raises before its first write (the writes that
  -- can fail are checked and taken back above; the rest cannot fail), so
  -- the others of the call and their counters below stand.
  local ok, reply, stored = pcall(buy_one, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5])
  if not ok then reply = { 'error', error_text(reply) } end
  replies[#replies + 1] = reply
  if K.idem and reply[1] ~= 'error' then idem_finish(fingerprint, reply, stored) end
end
-- The bought holds' owner entries and records: both keys were read as
-- hashes by this call, so neither removal can fail.
if #gone_holds > 0 then
  in_chunks(gone_tickets, function(...) redis.call('HDEL', K.owner, ...) end)
  in_chunks(gone_holds, function(...) redis.call('HDEL', K.holds, ...) end)
end
if #paydue > 0 then
  -- Last, and allowed to fail like the hold's wake-up: the orders stand.
  if redis.pcall('RPUSH', TAG .. 'paydue', unpack(paydue)) == #paydue then
    redis.pcall('PUBLISH', ARGV[3], ARGV[4])
  end
end
if sold > 0 then
  redis.call('HINCRBY', K.meta, 'held', -sold)
  redis.call('HINCRBY', K.meta, 'sold', sold)
  redis.call('HINCRBY', K.meta, 'orders', orders)
end
return replies

-- hold: reserves tickets of one event, all or nothing per hold, for one or
-- more holds at once (the server groups concurrent requests for an event
-- into one call; each hold succeeds or fails on its own).
-- KEYS[1..9]: the event's keys (see lib.lua)
-- KEYS[10]: optional idempotency record (then exactly one hold)
-- ARGV[1]: wake-up channel   ARGV[2]: event id
-- ARGV[3]: most live holds one user may have in the event (0: no limit)
-- ARGV[4]: with KEYS[10], '<record ttl seconds>|<request fingerprint>' (see idem_arg)
-- Then four per hold: secret, userId, 't' (then comma-separated ticket ids)
-- or 'q' (then a quantity, or 'quantity:sectionId' for the lowest free
-- tickets of one section); 't' or 'q' may be followed by the queue id the
-- request names (its Queue-Id header).
-- While the event has a waiting room (meta `queue`), a hold needs the queue
-- id of an admitted place of its own user (see queue.lua), and a user has
-- at most one live hold.
-- Publishes the event id on channel ARGV[1] when the schedule was empty or
-- the new deadline may come before the scheduled ones, so a sleeping
-- release worker learns of it.
-- Returns { 'not_found' } | { 'schema', v } | { 'damaged', what } for the whole call, otherwise one
-- reply per hold:
--          'expired|seq|deadlineMs|nowMs|amount|currency|t1,t2,..' (held; without KEYS[10])
--        | { 'ok', expired, secret, seq, deadlineMs, nowMs, amount, currency, t1, t2, .. }
--          (held; with KEYS[10])
--        | { 'not_on_sale', 'opens'|'closed', ms }: outside the sale window
--        | { 'no_section', id }: the event has no such section
--        | { 'user_limit', remaining, expired }: the user's held and bought
--          tickets would pass maxTicketsPerUser
--        | { 'unavailable', expired, t1, .. } (quantity: { 'unavailable', expired, available })
--        | { 'sweep_more', expired }: expired holds may be in the way; release
--          them (release_expired) and call again
--        | { 'invalid', message[, expired] } | { 'idem_mismatch' }
--        | { 'hold_limit', max, expired }: the user already has that many live holds
--        | { 'queue_required', why }: no admitted place of this user named
--        | { 'error', message }: counters and bitmap disagree, or a key is
--          damaged (nothing held)
-- `expired` is -1 in a reply replayed for a repeated Idempotency-Key.
-- Every outcome but sweep_more, not_on_sale and error is kept for the key.

-- The call's state, set at its start. The functions below are made once
-- where the scripts run as a library's functions (see functions.rs), not
-- on every call: they find the call's state here.
local fingerprint, meta, now, max_user, max_tickets, count_tickets, deadline, seq
local deadline_s, now_s, record_mid, answer_mid, answer_currency
local added, scheduled, owners, records, early, section_added, pending
local charged, claiming, tickets_user, tickets_n
-- What a hold has claimed before it claims anything (never written to).
local NONE = {}

-- Takes back the charge of a hold's tickets that does not happen.
local function uncharge_tickets()
  if tickets_user then user_tickets_add(tickets_user, '-' .. tickets_n) end
  tickets_user = nil
end

-- Counts `n` tickets (text) against the user's maxTicketsPerUser first
-- (one call on the common path), looking for expired holds of theirs to
-- release before a refusal. Returns ok, remaining, holds released.
local function charge_tickets(user, n)
  local have = redis.pcall('HINCRBY', K.utix, user, n)
  if type(have) == 'table' then have = user_tickets_add(user, n) end
  tickets_user, tickets_n = user, n
  if have <= max_tickets or max_tickets == 0 then return true end
  local released = sweep(now, 1000)
  meta.held = tonumber(redis.call('HGET', K.meta, 'held'))
  have = tonumber(redis.call('HGET', K.utix, user) or '0') or 0
  if have <= max_tickets then return true, 0, released end
  uncharge_tickets()
  return false, math.max(max_tickets - (have - tonumber(n)), 0), released
end

-- Takes back the charge of a hold that does not happen (if it was charged).
local function uncharge(user)
  if charged then user_hold_done(user) end
  charged = nil
end

-- Counts the hold against its user first (one call on the common path) and
-- takes it back when the hold does not happen. Returns whether it may go on,
-- and how many expired holds were released to find out. Called only with a
-- limit: without one holds are not counted. Holds do not record whether
-- they were counted, so one made without a limit lowers its user's count
-- when it ends (if the user has one) and leaves none behind when the user
-- has none.
local function charge_user(user)
  local n = user_count_add(user, '1')
  charged = user
  if n <= max_user then return true, 0 end
  -- Holds past their deadline do not count: release this user's, oldest
  -- first, as part of the general sweep, then look again.
  local released = sweep(now, 1000)
  meta.held = tonumber(redis.call('HGET', K.meta, 'held'))
  if (tonumber(redis.call('HGET', K.uholds, user)) or 0) <= max_user then return true, released end
  uncharge(user)
  return false, released
end

-- Claims explicit tickets; returns the tickets (as text), or nil and a reply.
-- Arguments to Redis stay text: a Lua number costs a printf each time.
local function claim_tickets(csv)
  -- One ticket (the common case) skips the pattern iterator, and when it
  -- is free its one table is also what the hold claimed.
  local tickets
  if csv ~= '' and not string.find(csv, ',', 1, true) then
    tickets = { csv }
    if meta.max_per_hold >= 1 and tonumber(csv) <= meta.capacity
        and redis.call('SETBIT', K.taken, csv, '1') == 0 then
      claiming = tickets
      return tickets, nil, 0
    end
    -- Refused or taken: as for several (SETBIT answers 1 again).
  else
    tickets = {}
    for v in string.gmatch(csv, '[^,]+') do tickets[#tickets + 1] = v end
  end
  if #tickets > meta.max_per_hold then
    return nil, { 'invalid', 'at most ' .. meta.max_per_hold .. ' tickets per hold' }
  end
  if #tickets == 0 then return nil, { 'invalid', 'at least one ticket per hold' } end
  for _, t in ipairs(tickets) do
    if tonumber(t) > meta.capacity then
      return nil, { 'invalid', 'ticketId ' .. t .. ' is out of range 1..' .. meta.capacity }
    end
  end
  -- SETBIT answers the old bit, so one call both claims a free ticket and
  -- finds a taken one; claims are undone below if any ticket is taken.
  claiming = {}
  local busy, claimed, expired, lowest_repaired = {}, claiming, 0, nil
  for _, t in ipairs(tickets) do
    if redis.call('SETBIT', K.taken, t, '1') == 0 then
      claimed[#claimed + 1] = t
    else
      local gone = false
      if not pending[t] and redis.call('GETBIT', K.sold, t) == 0 then
        -- Held: an expired holder counts as gone, whether or not a release
        -- worker has been by yet.
        local owner = redis.call('HGET', K.owner, t)
        local h = owner and parse_hold(redis.call('HGET', K.holds, owner))
        if h and h.deadline <= now then
          meta.held = meta.held - free_hold(tonumber(owner), h)
          count_expired(1)
          expired = expired + 1
          gone = true
        elseif not h then
          -- Taken and unsold but no live hold owns it (state damaged by
          -- hand, or a call that failed halfway): nobody holds it. Only a
          -- ticket with an owner entry was counted as held.
          if owner then
            redis.call('HDEL', K.owner, t)
            redis.call('HINCRBY', K.meta, 'held', -1)
            section_count({ t }, 'held', -1)
            meta.held = meta.held - 1
          end
          lowest_repaired = math.min(lowest_repaired or tonumber(t), tonumber(t))
          gone = true
        end
      end
      if gone then
        redis.call('SETBIT', K.taken, t, '1')
        claimed[#claimed + 1] = t
      else
        busy[#busy + 1] = t
      end
    end
  end
  if #busy > 0 then
    -- They were free before this call, so the hint already lies below them
    -- (an expired holder's were freed through free_hold, which lowers it);
    -- a repaired ticket may lie above it: lower the hint to that.
    for _, t in ipairs(claimed) do redis.call('SETBIT', K.taken, t, '0') end
    if lowest_repaired and lowest_repaired < tonumber(redis.call('HGET', K.meta, 'hint') or '1') then
      redis.call('HSET', K.meta, 'hint', lowest_repaired)
    end
    local reply = { 'unavailable', expired }
    for _, t in ipairs(busy) do reply[#reply + 1] = t end
    return nil, reply
  end
  return tickets, nil, expired
end

-- Claims the lowest `n` available tickets (of one section when `sid` is
-- given); returns them, or nil and a reply.
local function claim_quantity(n, sid)
  n = tonumber(n)
  if n > meta.max_per_hold then
    return nil, { 'invalid', 'at most ' .. meta.max_per_hold .. ' tickets per hold' }
  end
  local first, last, sec = 1, meta.capacity, nil
  if sid then
    for _, x in ipairs(sections()) do
      if x.id == sid then sec = x end
    end
    if not sec then return nil, { 'no_section', sid } end
    first, last = sec.first, sec.last
    if not sectioned() then sec = nil end
  end
  -- Free tickets where the hold looks: the event's, or its section's.
  local function free_here()
    if not sec then return meta.capacity - meta.held - added - meta.sold end
    local c = redis.call('HMGET', K.meta, 'held:' .. sec.i, 'sold:' .. sec.i)
    return sec.capacity - (tonumber(c[1]) or 0) - (tonumber(c[2]) or 0) - (section_added[sec.i] or 0)
  end
  local expired = 0
  local avail = free_here()
  if avail < n then
    local nxt
    expired, nxt = sweep(now, 1000)
    meta.held = tonumber(redis.call('HGET', K.meta, 'held'))
    avail = free_here()
    if avail < n and nxt == now then return nil, { 'sweep_more', expired } end
  end
  if avail < n then return nil, { 'unavailable', expired, avail } end
  local tickets = {}
  local hint_field = sec and ('hint:' .. sec.i) or 'hint'
  local pos = tonumber(redis.call('HGET', K.meta, hint_field) or '1') or 1
  if pos < first then pos = first end
  while #tickets < n do
    local p = redis.call('BITPOS', K.taken, 0, pos, last, 'BIT')
    if p < first or p > last then break end
    tickets[#tickets + 1] = p
    pos = p + 1
  end
  if #tickets < n then
    -- Counters and bitmap disagree; refuse rather than oversell.
    return nil, { 'error', 'ticket bitmap and counters disagree for ' .. K.meta }
  end
  claiming = {}
  for i, t in ipairs(tickets) do
    tickets[i] = fmt_int(t)
    redis.call('SETBIT', K.taken, tickets[i], '1')
    claiming[i] = tickets[i]
  end
  redis.call('HSET', K.meta, hint_field, pos)
  return tickets, nil, expired
end

-- What `tickets` (text) cost at today's prices, as text, and (sectioned
-- events) how many fall in each section, added to section_added.
local function price_of(tickets)
  if not meta.sections_text then return '0' end
  local list = sections()
  if #list == 1 then
    if #tickets == 1 or list[1].price == 0 then return #tickets == 1 and list[1].price_s or '0' end
    return fmt_int(#tickets * list[1].price)
  end
  local amount = 0
  for _, t in ipairs(tickets) do
    local x = section_of(tonumber(t))
    amount = amount + x.price
    section_added[x.i] = (section_added[x.i] or 0) + 1
  end
  return fmt_int(amount)
end

-- The queue's MAC key (read once per call).
local queue_key

-- Why a hold behind the waiting room is refused, or nil and when the
-- admission runs out: `qid` must name an admitted place of `user` whose
-- admission has not run out.
local function queue_refusal(user, qid)
  if qid == '' then return 'this event has a waiting room: hold with the Queue-Id of your admitted place' end
  local ev, j, mac = string.match(qid, '^([%w_-]+)%.q(%d+)%.(%x+)$')
  if not ev or ev ~= ARGV[2] then return 'the Queue-Id is not a place in this event\'s waiting room' end
  queue_key = queue_key or redis.call('HGET', TAG .. 'q', 'key') or ''
  if queue_key == '' or string.sub(redis.sha1hex(queue_key .. ':' .. ev .. ':' .. j), 1, 32) ~= mac then
    return 'the Queue-Id is not a place in this event\'s waiting room'
  end
  if redis.call('HGET', TAG .. 'qu', user) ~= j then return 'the Queue-Id is another user\'s place' end
  local until_ms = tonumber(redis.call('ZSCORE', TAG .. 'qa', j) or '0')
  if until_ms <= now then return 'this place is not admitted (not yet, or no longer)' end
  return nil, until_ms
end

local function hold_one(secret, user, mode, arg)
  -- Behind a waiting room a hold lasts no longer than its admission.
  local own_deadline
  if #mode > 1 or meta.queue_max then
    local qid = string.sub(mode, 2)
    mode = string.sub(mode, 1, 1)
    if meta.queue_max then
      local why, until_ms = queue_refusal(user, qid)
      if why then return { 'queue_required', why } end
      if until_ms < deadline then own_deadline = until_ms end
    end
  end
  local quantity, sid = arg, nil
  if mode ~= 't' then
    local n, s = string.match(arg, '^(%d+):(.+)$')
    if n then quantity, sid = n, s end
  end
  if count_tickets then
    -- How many tickets, as text: one ticket (the common case) is '1'.
    local n = quantity
    if mode == 't' then
      n = string.find(arg, ',', 1, true) and fmt_int(#split_csv(arg)) or '1'
    end
    local ok, remaining, released = charge_tickets(user, n)
    if not ok then return { 'user_limit', remaining, released } end
  end
  local allowed, swept = true, 0
  if max_user > 0 then allowed, swept = charge_user(user) end
  if not allowed then
    uncharge_tickets()
    return { 'hold_limit', max_user, swept }
  end
  local tickets, reply, expired
  if mode == 't' then
    tickets, reply, expired = claim_tickets(arg)
  else
    tickets, reply, expired = claim_quantity(quantity, sid)
  end
  if not tickets then
    uncharge(user)
    uncharge_tickets()
    -- Holds released on the way are reported with the refusal.
    if reply[1] == 'unavailable' or reply[1] == 'sweep_more' then
      reply[2] = reply[2] + swept
    elseif reply[1] == 'invalid' and swept > 0 then
      reply[3] = swept
    end
    return reply
  end
  expired = expired + swept
  seq = seq + 1
  local id = fmt_int(seq)
  local amount_s = price_of(tickets)
  -- Counted (above, and marked so) only while the event has a per-user limit.
  -- (price_field, inlined: this runs for every hold)
  local price = count_tickets and (':' .. amount_s .. ':u') or (amount_s == '0' and '' or ':' .. amount_s)
  for _, t in ipairs(tickets) do
    owners[#owners + 1] = t
    owners[#owners + 1] = id
    pending[t] = id
  end
  local csv = #tickets == 1 and tickets[1] or table.concat(tickets, ',')
  local mid, amid = record_mid, answer_mid
  if own_deadline then
    local d = fmt_int(own_deadline)
    mid, amid = '|' .. d .. '|', '|' .. d .. '|' .. now_s .. '|'
    early[#early + 1] = d
    early[#early + 1] = id
  else
    scheduled[#scheduled + 1] = id
  end
  records[#records + 1] = id
  records[#records + 1] = secret .. mid .. csv .. price .. '|' .. user
  added = added + #tickets
  if not K.idem then
    -- The short form: one string is far cheaper to send and to read.
    return (expired == 0 and '0' or fmt_int(expired)) .. '|' .. id .. amid .. amount_s .. answer_currency
      .. csv
  end
  reply = { 'ok', expired, secret, seq, own_deadline or deadline, now, amount_s, meta.currency }
  for _, t in ipairs(tickets) do reply[#reply + 1] = t end
  return reply
end

-- Takes back what holds changed before failing (see `charged`): frees the
-- tickets they claimed, and their owner entries and records where written
-- (with a seq), and uncharges their users. Every step is tried, whatever
-- fails. `holds`: { tickets (text), seq text or nil, user or nil } each.
local function undo(holds)
  local lowest
  for _, d in ipairs(holds) do
    local tickets, id, user = d[1], d[2], d[3]
    for _, t in ipairs(tickets) do
      redis.pcall('SETBIT', K.taken, t, '0')
      if id and redis.pcall('HGET', K.owner, t) == id then redis.pcall('HDEL', K.owner, t) end
      if not lowest or tonumber(t) < lowest then lowest = tonumber(t) end
    end
    if id then redis.pcall('HDEL', K.holds, id) end
    if user then pcall(user_hold_done, user) end
    if d[4] then pcall(user_tickets_add, d[4], count_text(#tickets, '-')) end
  end
  local hint = redis.pcall('HGET', K.meta, 'hint')
  if lowest and type(hint) ~= 'table' and lowest < (tonumber(hint) or 1) then
    redis.pcall('HSET', K.meta, 'hint', lowest)
  end
end

-- The writes shared by this call's holds; if one fails, none of the holds
-- is kept and each is refused with the error.
local function write_holds()
  local first = false
  in_chunks(owners, function(...) redis.call('HSET', K.owner, ...) end)
  if #records > 0 then
    redis.call('HSET', K.holds, unpack(records))
  end
  if #early > 0 then
    -- Earlier than the list's order allows: in `due`, and a sleeping
    -- release worker may be waiting for a later deadline.
    redis.call('ZADD', K.due, unpack(early))
    first = true
  end
  if #scheduled > 0 then
    if not meta.sched_floor or deadline >= meta.sched_floor then
      -- In deadline order after every hold of the list.
      first = redis.call('RPUSH', K.sched, unpack(scheduled)) == #scheduled or first
    else
      -- Before holds made with a longer hold time: in `due`, and a
      -- sleeping release worker may be waiting for a later deadline.
      local scored = {}
      for _, id in ipairs(scheduled) do
        scored[#scored + 1] = deadline_s
        scored[#scored + 1] = id
      end
      redis.call('ZADD', K.due, unpack(scored))
      first = true
    end
  end
  if #records > 0 then
    redis.call('HSET', K.meta, 'seq', records[#records - 1])
    redis.call('HINCRBY', K.meta, 'held', added)
    for i, n in pairs(section_added) do redis.call('HINCRBY', K.meta, 'held:' .. i, n) end
  end
  return first
end

-- per call:
fingerprint = ARGV[4]
local replay = idem_replay(fingerprint)
if replay then return { replay } end

local err
meta, err = load_meta()
if not meta then return err end
now = now_ms()
-- Outside the sale window every hold of the call is refused alike.
local closed = nil
if meta.sales_start and now < meta.sales_start then
  closed = { 'not_on_sale', 'opens', meta.sales_start }
elseif meta.sales_end and now >= meta.sales_end then
  closed = { 'not_on_sale', 'closed', meta.sales_end }
end
if closed then
  local replies = {}
  for i = 5, #ARGV, 4 do replies[#replies + 1] = closed end
  return replies
end
max_user = tonumber(ARGV[3])
-- Behind a waiting room an admitted place has one live hold at a time.
if meta.queue_max and max_user ~= 1 then max_user = 1 end
max_tickets = meta.max_user
-- Tickets are counted toward their buyer while a limit is on, or being set.
count_tickets = max_tickets > 0 or meta.counting
deadline = now + meta.ttl_ms
-- Written once at the end: the last hold number, tickets newly held, and
-- the new holds' schedule entries (all share one deadline, in seq order).
seq = meta.seq
deadline_s, now_s = fmt_int(deadline), fmt_int(now)
-- The parts every hold of the call shares: of its record and of its answer.
record_mid = '|' .. deadline_s .. '|'
answer_mid = '|' .. deadline_s .. '|' .. now_s .. '|'
answer_currency = '|' .. meta.currency .. '|'
added, scheduled, owners, records = 0, {}, {}, {}
-- Holds whose deadline comes before the shared one (their admission runs
-- out first): score, id pairs for `due`.
early = {}
-- Tickets claimed by this call per section (sectioned events only).
section_added = {}
-- Tickets claimed by holds of this call (their owner entries are written at
-- the end): ticket id text -> hold seq text.
pending = {}
-- Redis keeps a script's writes when a command fails partway (say, on a key
-- damaged by hand), so what a hold has changed is noted as it goes and taken
-- back if it fails: the user it charged and the tickets it claimed.
-- With a per-user limit, also the user whose tickets it charged, and how
-- many (text).
charged, claiming, tickets_user, tickets_n = nil, NONE, nil, nil
queue_key = nil

local replies = {}
for i = 5, #ARGV, 4 do
  charged, claiming, tickets_user = nil, NONE, nil
  local ok, reply = pcall(hold_one, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
  if not ok then
    undo({ { claiming, nil, charged } })
    pcall(uncharge_tickets)
    reply = { 'error', error_text(reply) }
  end
  replies[#replies + 1] = reply
end

local ok, first_scheduled = pcall(write_holds)
if not ok then
  local done = {}
  for i = 1, #records, 2 do
    local h = parse_hold(records[i + 1])
    done[#done + 1] = { split_csv(h.csv), records[i], max_user > 0 and h.user or nil, h.counted and h.user or nil }
  end
  undo(done)
  -- Every reply goes: the refusals too were decided against holds that
  -- are now undone.
  local reply = { 'error', error_text(first_scheduled) }
  for i = 1, #replies do replies[i] = reply end
  first_scheduled = false
end

if K.idem then
  local reply = replies[1]
  local status = reply[1]
  if status ~= 'sweep_more' and status ~= 'error' then
    local stored = reply
    if status == 'ok' or status == 'unavailable' then
      stored = { status, -1 }
      for i = 3, #reply do stored[#stored + 1] = reply[i] end
    elseif status == 'hold_limit' or status == 'invalid' or status == 'user_limit' then
      stored = { status, reply[2] }
    end
    idem_finish(fingerprint, reply, stored)
  end
end
-- Last, and allowed to fail (say, an ACL without channel rights): the holds
-- are complete whether or not the wake-up goes out.
if first_scheduled then redis.pcall('PUBLISH', ARGV[1], ARGV[2]) end
return replies

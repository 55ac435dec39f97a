-- hold: reserves tickets of one event for one user, all or nothing.
-- KEYS[1..9]: the event's keys (see lib.lua)   KEYS[10]: optional idempotency record
-- ARGV[1]: new hold secret   ARGV[2]: userId
-- ARGV[3]: 't' (ARGV[4] = comma-separated ticket ids) or 'q' (ARGV[4] = quantity)
-- ARGV[5]: request fingerprint (with KEYS[10])   ARGV[6]: wake-up channel   ARGV[7]: event id
-- ARGV[8]: most live holds one user may have in the event (0: no limit)
-- Publishes the event id on channel ARGV[6] when the hold is the only one
-- scheduled, so a sleeping release worker learns of a sooner deadline.
-- Returns: { 'ok', expired, secret, seq, deadlineMs, nowMs, t1, t2, .. }
--        | { 'unavailable', expired, t1, .. } (quantity: { 'unavailable', expired, available })
--        | { 'sweep_more', expired }: expired holds may be in the way; release
--          them (release_expired) and call again
--        | { 'invalid', message } | { 'not_found' } | { 'idem_mismatch' } | { 'schema', v }
--        | { 'hold_limit', max }: the user already has that many live holds
-- `expired` is -1 in a reply replayed for a repeated Idempotency-Key.
-- Every outcome but not_found/schema/sweep_more is kept for the key.
local replay = idem_replay(ARGV[5])
if replay then return replay end

local meta, err = load_meta()
if not meta then return err end
local now = now_ms()
local expired = 0
local tickets = {}
local max_user = tonumber(ARGV[8] or '0')
if max_user > 0 and tonumber(redis.call('HGET', K.uholds, ARGV[2]) or '0') >= max_user then
  -- Holds past their deadline do not count: release this user's, oldest
  -- first, as part of the general sweep, then look again.
  sweep(now, 1000)
  if tonumber(redis.call('HGET', K.uholds, ARGV[2]) or '0') >= max_user then
    return idem_finish(ARGV[5], { 'hold_limit', max_user })
  end
end

if ARGV[3] == 't' then
  tickets = split_csv(ARGV[4])
  if #tickets > meta.max_per_hold then
    return idem_finish(ARGV[5], { 'invalid', 'at most ' .. meta.max_per_hold .. ' tickets per hold' })
  end
  for _, t in ipairs(tickets) do
    if t > meta.capacity then
      return idem_finish(ARGV[5], { 'invalid', 'ticketId ' .. fmt_int(t) .. ' is out of range 1..' .. meta.capacity })
    end
  end
  -- SETBIT answers the old bit, so one call both claims a free ticket and
  -- finds a taken one; claims are undone below if any ticket is taken.
  local busy, claimed = {}, {}
  for _, t in ipairs(tickets) do
    if redis.call('SETBIT', K.taken, t, 1) == 0 then
      claimed[#claimed + 1] = t
    else
      local gone = false
      if redis.call('GETBIT', K.sold, t) == 0 then
        -- Held: an expired holder counts as gone, whether or not a release
        -- worker has been by yet.
        local owner = redis.call('HGET', K.owner, t)
        local h = owner and parse_hold(redis.call('HGET', K.holds, owner))
        if h and h.deadline <= now then
          free_hold(tonumber(owner), h)
          count_expired(1)
          expired = expired + 1
          gone = true
        elseif not h then
          -- Owner index without a hold record (state damaged by hand): the
          -- ticket is not held by anyone, so repair the counters.
          redis.call('HDEL', K.owner, t)
          redis.call('HINCRBY', K.meta, 'held', -1)
          gone = true
        end
      end
      if gone then
        redis.call('SETBIT', K.taken, t, 1)
        claimed[#claimed + 1] = t
      else
        busy[#busy + 1] = t
      end
    end
  end
  if #busy > 0 then
    -- They were free before this call, so the hint already lies below them.
    for _, t in ipairs(claimed) do redis.call('SETBIT', K.taken, t, 0) end
    local reply = { 'unavailable', expired }
    for _, t in ipairs(busy) do reply[#reply + 1] = t end
    if K.idem then
      local stored = { 'unavailable', -1 }
      for _, t in ipairs(busy) do stored[#stored + 1] = t end
      idem_finish(ARGV[5], reply, stored)
    end
    return reply
  end
else
  local n = tonumber(ARGV[4])
  if n > meta.max_per_hold then
    return idem_finish(ARGV[5], { 'invalid', 'at most ' .. meta.max_per_hold .. ' tickets per hold' })
  end
  local avail = meta.capacity - meta.held - meta.sold
  if avail < n then
    local nxt
    expired, nxt = sweep(now, 1000)
    avail = meta.capacity - tonumber(redis.call('HGET', K.meta, 'held')) - meta.sold
    if avail < n and nxt == now then return { 'sweep_more', expired } end
  end
  if avail < n then return idem_finish(ARGV[5], { 'unavailable', expired, avail }, { 'unavailable', -1, avail }) end
  local pos = tonumber(redis.call('HGET', K.meta, 'hint') or '1')
  while #tickets < n do
    local p = redis.call('BITPOS', K.taken, 0, pos, meta.capacity, 'BIT')
    if p < 1 or p > meta.capacity then break end
    tickets[#tickets + 1] = p
    pos = p + 1
  end
  if #tickets < n then
    -- Counters and bitmap disagree; refuse rather than oversell.
    return redis.error_reply('ticket bitmap and counters disagree for ' .. K.meta)
  end
  redis.call('HSET', K.meta, 'hint', pos)
end

local seq = redis.call('HINCRBY', K.meta, 'seq', 1)
local deadline = now + meta.ttl_ms
local owners = {}
for _, t in ipairs(tickets) do
  if ARGV[3] == 'q' then redis.call('SETBIT', K.taken, t, 1) end
  owners[#owners + 1] = t
  owners[#owners + 1] = seq
end
redis.call('HSET', K.owner, unpack(owners))
local csv = table.concat(tickets, ',')
redis.call('HSET', K.holds, seq, ARGV[1] .. '|' .. fmt_int(deadline) .. '|' .. csv .. '|' .. ARGV[2])
local first_scheduled = redis.call('RPUSH', K.sched, seq) == 1
redis.call('HINCRBY', K.meta, 'held', #tickets)
redis.call('HINCRBY', K.uholds, ARGV[2], 1)

local reply = { 'ok', expired, ARGV[1], seq, deadline, now }
for _, t in ipairs(tickets) do reply[#reply + 1] = t end
if K.idem then
  local stored = { 'ok', -1, ARGV[1], seq, deadline, now }
  for _, t in ipairs(tickets) do stored[#stored + 1] = t end
  idem_finish(ARGV[5], reply, stored)
end
-- Last, and allowed to fail (say, an ACL without channel rights): the hold
-- is complete whether or not the wake-up goes out.
if first_scheduled then redis.pcall('PUBLISH', ARGV[6], ARGV[7]) end
return reply

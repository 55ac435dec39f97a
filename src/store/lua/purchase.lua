-- purchase: turns a live hold into sold tickets, an order and one purchase
-- job, in one step. Buying the same hold again returns the same order.
-- KEYS[1..9]: the event's keys (see lib.lua)   KEYS[10]: optional idempotency record
-- ARGV[1]: 'h' (ARGV[2] = hold seq, ARGV[3] = hold secret, ARGV[4] = deadline
--          named by the holdId) or 't' (ARGV[2] = ticket id: the hold of this
--          user that holds it)
-- ARGV[5]: userId   ARGV[6]: new order secret   ARGV[7]: request fingerprint
-- Returns: { 'ok', created (1|0), seq, status, orderSecret, createdMs, completedMs|'', 't1,..', userId }
--        | { 'not_found' } | { 'forbidden' } | { 'expired' } | { 'not_held' }
--        | { 'idem_mismatch' } | { 'schema', v } | { 'invalid', message } (by ticket)
-- Every outcome but schema is kept for an Idempotency-Key (created = 0 when replayed).
local replay = idem_replay(ARGV[7])
if replay then return replay end

local meta, err = load_meta()
if not meta then return err end
local now = now_ms()
local user = ARGV[5]
local seq, h

local function order_reply(created, s, o)
  return { 'ok', created, s, o.status, o.secret, tonumber(o.created), o.completed, o.csv, o.user }
end

if ARGV[1] == 'h' then
  seq = tonumber(ARGV[2])
  h = parse_hold(redis.call('HGET', K.holds, seq))
  if h and h.secret ~= ARGV[3] then return idem_finish(ARGV[7], { 'not_found' }) end
  if not h then
    local o = parse_order(redis.call('HGET', K.orders, seq))
    if o and o.hold_secret == ARGV[3] then
      if o.user ~= user then return idem_finish(ARGV[7], { 'forbidden' }) end
      return idem_finish(ARGV[7], order_reply(0, seq, o))
    end
    if o then return idem_finish(ARGV[7], { 'not_found' }) end
    -- Gone without an order: it expired (and was released) or was cancelled.
    -- Its secret can no longer be checked, so only a hold number this event
    -- has issued counts as expired; any other id is unknown.
    local issued = tonumber(redis.call('HGET', K.meta, 'seq') or '0')
    if seq <= issued and tonumber(ARGV[4]) <= now then return idem_finish(ARGV[7], { 'expired' }) end
    return idem_finish(ARGV[7], { 'not_found' })
  end
  if h.user ~= user then return idem_finish(ARGV[7], { 'forbidden' }) end
else
  local reply
  seq, h, reply = hold_of_ticket(ARGV[2], meta)
  if not h then return reply end
  if h.user ~= user then return { 'not_held' } end
end

if h.deadline <= now then
  free_hold(seq, h)
  count_expired(1)
  return idem_finish(ARGV[7], { 'expired' })
end

for _, t in ipairs(h.tickets) do
  redis.call('SETBIT', K.sold, t, 1)
  redis.call('HDEL', K.owner, t)
end
redis.call('HDEL', K.holds, seq)
user_hold_done(h.user)
redis.call('HINCRBY', K.meta, 'held', -#h.tickets)
redis.call('HINCRBY', K.meta, 'sold', #h.tickets)
redis.call('HINCRBY', K.meta, 'orders', 1)
local o = { status = 'pending', secret = ARGV[6], created = fmt_int(now), completed = '',
            csv = h.csv, user = h.user }
redis.call('HSET', K.orders, seq, table.concat({ o.status, o.secret, h.secret, o.created, '', h.csv, h.user }, '|'))
redis.call('XADD', K.jobs, '*', 'seq', seq, 'secret', o.secret, 'userId', h.user,
  'ticketIds', h.csv, 'createdMs', o.created)
return idem_finish(ARGV[7], order_reply(1, seq, o), order_reply(0, seq, o))

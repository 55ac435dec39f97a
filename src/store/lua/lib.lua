-- Shared prelude: prepended to every script in this folder before it is
-- loaded, so each script stays one atomic EVALSHA. Owns no keys of its own.
--
-- Every per-event script receives the same nine keys, all carrying the
-- event's hash tag (one Cluster slot):
-- KEYS[1]: meta    hash   capacity, ttl_ms, max_per_hold, held, sold, seq, hint, v
-- KEYS[2]: taken   bitmap bit t set while ticket t is held or sold (bit 0 always set)
-- KEYS[3]: sold    bitmap bit t set once ticket t is sold
-- KEYS[4]: owner   hash   ticket -> hold seq, for held tickets only
-- KEYS[5]: holds   hash   hold seq -> "secret|deadlineMs|t1,t2,..|userId"
-- KEYS[6]: sched   list   hold seqs in creation order (= deadline order: the
--                         hold time is fixed per event)
-- KEYS[7]: orders  hash   hold seq -> "status|orderSecret|holdSecret|createdMs|completedMs|t1,..|userId"
-- KEYS[8]: jobs    stream purchase jobs, consumer group "purchase"
-- KEYS[9]: uholds  hash   userId -> number of live holds (no entry at 0)
-- KEYS[10]: idem   string optional Idempotency-Key record (only some scripts)

local SCHEMA = 1
local K = {
  meta = KEYS[1], taken = KEYS[2], sold = KEYS[3], owner = KEYS[4],
  holds = KEYS[5], sched = KEYS[6], orders = KEYS[7], jobs = KEYS[8],
  uholds = KEYS[9], idem = KEYS[10],
}

-- Lua unpacks at most ~8000 values at once, so a command given a long list
-- gets it UNPACK_MAX values (an even number: pairs stay whole) at a time.
local UNPACK_MAX = 4000

-- Calls f(...) with the values of `list`, at most UNPACK_MAX at a time.
local function in_chunks(list, f)
  for i = 1, #list, UNPACK_MAX do
    f(unpack(list, i, math.min(i + UNPACK_MAX - 1, #list)))
  end
end

-- Like in_chunks, for a command answering one value per argument (HMGET,
-- ZMSCORE): returns its answers for the whole list, in order.
local function collect_in_chunks(list, f)
  local out = {}
  in_chunks(list, function(...)
    for _, v in ipairs(f(...)) do out[#out + 1] = v end
  end)
  return out
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function fmt_int(n)
  return string.format('%d', n)
end

local function split_csv(s)
  local out = {}
  for v in string.gmatch(s, '[^,]+') do out[#out + 1] = tonumber(v) end
  return out
end

-- The meta fields every script may read or count into: all integers.
local META_FIELDS = { 'capacity', 'ttl_ms', 'max_per_hold', 'held', 'sold', 'v', 'seq', 'hint',
                      'expired', 'orders', 'completed', 'failed' }
-- Those that are always there.
local META_REQUIRED = 6

-- Returns the event's settings and counters, or nil plus a reply when the
-- event does not exist ({ 'not_found' }), was written by an unknown schema
-- version ({ 'schema', v }), or has a field that is not an integer
-- ({ 'damaged', what }: by hand, say). A damaged counter is refused here,
-- before any write, because a script failing on it halfway would keep its
-- earlier writes.
local function load_meta()
  local m = redis.call('HMGET', K.meta, unpack(META_FIELDS))
  if not m[1] then return nil, { 'not_found' } end
  if tonumber(m[6]) ~= SCHEMA then return nil, { 'schema', tostring(m[6]) } end
  for i, f in ipairs(META_FIELDS) do
    local v = m[i]
    if (v or i <= META_REQUIRED) and not (v and string.find(v, '^%-?%d+$')) then
      return nil, { 'damaged', K.meta .. ' field ' .. f .. ' is ' .. (v and ('"' .. v .. '", not an integer') or 'missing') }
    end
  end
  return {
    capacity = tonumber(m[1]), ttl_ms = tonumber(m[2]), max_per_hold = tonumber(m[3]),
    held = tonumber(m[4]), sold = tonumber(m[5]), seq = tonumber(m[7]) or 0,
  }
end

local function parse_hold(rec)
  if not rec then return nil end
  local secret, deadline, tickets, user = string.match(rec, '^([^|]*)|(%d+)|([%d,]*)|(.*)$')
  if not secret then return nil end
  return { secret = secret, deadline = tonumber(deadline), csv = tickets,
           tickets = split_csv(tickets), user = user }
end

-- Whether a holdId's secret and deadline (text, from the id) are those of
-- hold `h`: an id naming another secret or deadline is not this hold's.
local function names_hold(h, secret, deadline)
  return h.secret == secret and h.deadline == tonumber(deadline)
end

local function parse_order(rec)
  if not rec then return nil end
  local status, osecret, hsecret, created, completed, tickets, user =
    string.match(rec, '^(%a+)|([^|]*)|([^|]*)|(%d+)|(%d*)|([%d,]*)|(.*)$')
  if not status then return nil end
  return { status = status, secret = osecret, hold_secret = hsecret, created = created,
           completed = completed, csv = tickets, user = user }
end

-- An order's record (as parse_order reads it) with this status and
-- completion time ('' for none).
local function order_record(o, status, completed)
  return table.concat({ status, o.secret, o.hold_secret, o.created, completed, o.csv, o.user }, '|')
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

-- Whether the event has users' counts at all (none while the limit is off),
-- looked up once per call before the first decrement: without counts a
-- decrement has nothing to do.
local counts_exist = nil

-- Changes a user's count of live holds by `by` ('1' or '-1': text, which
-- Redis takes without a printf) and returns the new count. The count is
-- derived data: one that is not a number (damaged by hand) starts again
-- from this change instead of failing the call halfway, which would stop
-- every hold, sale and release of its user.
local function user_count_add(user, by)
  if by == '1' then
    counts_exist = true
  else
    if counts_exist == nil then counts_exist = redis.call('EXISTS', K.uholds) == 1 end
    if not counts_exist then return 0 end
  end
  local n = redis.pcall('HINCRBY', K.uholds, user, by)
  if type(n) == 'table' or (n < 1 and by == '1') then
    n = tonumber(by)
    if n > 0 then redis.call('HSET', K.uholds, user, by) end
  end
  if n <= 0 then redis.pcall('HDEL', K.uholds, user) end
  return n
end

-- The text of an error caught from redis.call (a table) or from Lua.
local function error_text(e)
  return type(e) == 'table' and e.err or tostring(e)
end

-- One live hold fewer for this user.
local function user_hold_done(user)
  user_count_add(user, '-1')
end

-- Puts a hold's tickets back on sale and forgets the hold. A ticket is only
-- freed while the owner index still names this hold, so a corrupt index can
-- never free a ticket that belongs to someone else.
local function free_hold(seq, h)
  local freed, lowest = 0, nil
  for _, t in ipairs(h.tickets) do
    if tonumber(redis.call('HGET', K.owner, t)) == seq then
      redis.call('SETBIT', K.taken, t, 0)
      redis.call('HDEL', K.owner, t)
      freed = freed + 1
      if not lowest or t < lowest then lowest = t end
    end
  end
  redis.call('HDEL', K.holds, seq)
  user_hold_done(h.user)
  if freed > 0 then
    redis.call('HINCRBY', K.meta, 'held', -freed)
    local hint = tonumber(redis.call('HGET', K.meta, 'hint') or '1')
    if lowest < hint then redis.call('HSET', K.meta, 'hint', lowest) end
  end
  return freed
end

-- Releases expired holds from the head of the schedule, at most `max` of
-- them. Entries of holds that were bought or cancelled are dropped on the way
-- (up to 16 * max of them, so one call stays short).
-- Returns released, next deadline (-1: none scheduled; `now`: more to do),
-- and fills `lags` (when a table) with each release's lateness in ms.
local function sweep(now, max, lags)
  local released, dropped, next_deadline = 0, 0, now
  while dropped < max * 16 do
    local head = redis.call('LINDEX', K.sched, 0)
    if not head then next_deadline = -1; break end
    local h = parse_hold(redis.call('HGET', K.holds, head))
    if not h then
      redis.call('LPOP', K.sched)
      dropped = dropped + 1
    elseif h.deadline <= now then
      if released >= max then break end
      free_hold(tonumber(head), h)
      redis.call('LPOP', K.sched)
      released = released + 1
      if lags then lags[#lags + 1] = now - h.deadline end
    else
      next_deadline = h.deadline
      break
    end
  end
  if released > 0 then redis.call('HINCRBY', K.meta, 'expired', released) end
  return released, next_deadline
end

-- Counts holds released at their deadline (inline, not by sweep()).
local function count_expired(n)
  if n > 0 then redis.call('HINCRBY', K.meta, 'expired', n) end
end

-- An Idempotency-Key's argument (with KEYS[10]) is '<ttl seconds>|<request
-- fingerprint>': how long the record is kept comes from keys.rs with it.
local function idem_arg(arg)
  local ttl, fingerprint = string.match(arg, '^(%d+)|(.*)$')
  if not ttl then error('idempotency argument is not ttl|fingerprint') end
  return fingerprint, ttl
end

-- Idempotency-Key: returns the stored reply for a repeated key, an
-- 'idem_mismatch' reply when the key was used with another request, or nil.
local function idem_replay(arg)
  if not K.idem then return nil end
  local stored = redis.call('GET', K.idem)
  if not stored then return nil end
  local rec = cjson.decode(stored)
  if rec.fp ~= (idem_arg(arg)) then return { 'idem_mismatch' } end
  return rec.reply
end

-- Stores `stored` as the answer to replay for this key, returns `reply`.
local function idem_finish(arg, reply, stored)
  if K.idem then
    local fingerprint, ttl = idem_arg(arg)
    redis.call('SET', K.idem, cjson.encode({ fp = fingerprint, reply = stored or reply }), 'EX', ttl)
  end
  return reply
end


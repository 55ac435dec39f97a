-- Shared prelude: prepended to every script in this folder before it is
-- loaded, so each script stays one atomic EVALSHA. Owns no keys of its own.
-- What only some scripts use lives in orders.lua and settings.lua, added
-- after this for those scripts: every line of a prelude costs each call of
-- every script that carries it (Redis runs the whole chunk per call).
--
-- Every per-event script receives the same nine keys, all carrying the
-- event's hash tag (one Cluster slot), and names two more of that tag
-- itself (utix and due: the hold path rarely touches them, and each key
-- passed costs every call; a key of the same slot is served as a passed one):
-- KEYS[1]: meta    hash   capacity, ttl_ms, max_per_hold, held, sold, seq, hint, v, and
--                         the selling settings `sell` and `sections` (see load_meta);
--                         per-section counters held:<i>, sold:<i>, hint:<i> when there
--                         are several sections
-- KEYS[2]: taken   bitmap bit t set while ticket t is held or sold (bit 0 always set)
-- KEYS[3]: sold    bitmap bit t set once ticket t is sold
-- KEYS[4]: owner   hash   ticket -> hold seq, for held tickets only
-- KEYS[5]: holds   hash   hold seq -> "secret|deadlineMs[~firstDeadlineMs~extensions]|t1,t2,..[:amount[:u]]|userId"
--                         (an extended hold keeps the deadline its holdId names)
-- KEYS[6]: sched   list   hold seqs in deadline order: every hold whose deadline is not
--                         before meta's sched_floor (no floor: every hold; the hold
--                         time is then what it was when the event was made, so
--                         creation order is deadline order)
-- KEYS[7]: orders  hash   hold seq -> "status|orderSecret|holdSecret|createdMs|completedMs|t1,..[:amount[:u]]|userId"
-- KEYS[8]: jobs    stream purchase jobs, consumer group "purchase"
-- KEYS[9]: uholds  hash   userId -> number of live holds (no entry at 0)
-- KEYS[10]: idem   string optional Idempotency-Key record (only some scripts)
-- <tag>:utix       hash   userId -> tickets held plus bought while a per-user limit
--                         was on (no entry at 0)
-- <tag>:due        zset   hold seq scored by its deadline (ms): holds whose deadline
--                         comes before sched_floor (made after the hold time was
--                         shortened), which the list cannot keep in order
--
-- After a record's tickets, ':amount' (minor units of the event's currency,
-- which never changes) unless it costs 0, then ':u' when its tickets count
-- toward its user's entry in utix (it was made while the event had a
-- per-user limit). A record of an older version has neither: 0, uncounted.
--
-- Arguments to Redis stay text on hot paths: Redis formats a Lua number
-- argument with a printf each time.
--
-- Money: Lua's numbers are doubles, which hold every integer below 2^53
-- exactly; prices are at most 10^12 minor units and a hold at most 1000
-- tickets, so no amount here is ever rounded.

-- The globals the scripts use, as upvalues: set by begin() on every call,
-- since a library's functions find each global through a lookup that
-- misses first (the globals are not there yet when the library loads, so
-- they cannot be read here once).
local function globals()
  return redis, string, table, math, tonumber, tostring, type, ipairs, pairs, pcall, unpack,
    setmetatable, error, cjson
end
local redis, string, table, math, tonumber, tostring, type, ipairs, pairs, pcall, unpack,
  setmetatable, error, cjson

local SCHEMA = 1
local NKEYS = 9
-- The call's keys (set by begin()).
local K, TAG = nil, nil
-- The event loaded by load_meta (for the section helpers below), and the
-- table of its settings.
local EV, EV_SET = nil, nil
-- Whether the event has users' counts at all (none while the limit is off),
-- looked up once per call before the first decrement: without counts a
-- decrement has nothing to do (see user_count_add).
local counts_exist = nil
-- The Redis time of the call in ms, read once (see now_ms).
local NOW = nil

-- The keys of the event named last (its tag, then the names made from it).
local K_TAG, K_NAMED = nil, nil

-- Starts a call: the first thing every call runs (functions.rs puts it
-- before each script's own text). The scripts also run as the functions of
-- one library (FUNCTION LOAD once, then FCALL), whose top-level code runs
-- once at load, not per call: what depends on the call is set here, and
-- what a call leaves behind is cleared.
local function begin(keys)
  redis, string, table, math, tonumber, tostring, type, ipairs, pairs, pcall, unpack,
    setmetatable, error, cjson = globals()
  -- 'tc:{ev:<id>}:' + name (KEYS[1] ends in 'meta').
  TAG = string.sub(keys[1], 1, -5)
  if TAG ~= K_TAG then
    K_TAG, K_NAMED = TAG, { TAG .. 'utix', TAG .. 'due', TAG .. 'q', TAG .. 'qu', TAG .. 'qa' }
  end
  -- One table for every call (its fields are set each time): a table made
  -- per call costs each call its allocation and one insertion per field.
  K = K or {}
  K.meta, K.taken, K.sold, K.owner, K.holds = keys[1], keys[2], keys[3], keys[4], keys[5]
  K.sched, K.orders, K.jobs, K.uholds, K.idem = keys[6], keys[7], keys[8], keys[9], keys[10]
  K.utix, K.due, K.q, K.qu, K.qa = K_NAMED[1], K_NAMED[2], K_NAMED[3], K_NAMED[4], K_NAMED[5]
  EV, EV_SET, counts_exist, NOW = nil, nil, nil, nil
end

-- Lua unpacks at most ~8000 values at once, so a command given a long list
-- gets it UNPACK_MAX values (an even number: pairs stay whole) at a time.
local UNPACK_MAX = 4000

-- Calls f(...) with the values of `list`, at most UNPACK_MAX at a time.
local function in_chunks(list, f)
  for i = 1, #list, UNPACK_MAX do
    f(unpack(list, i, math.min(i + UNPACK_MAX - 1, #list)))
  end
end

local function now_ms()
  if NOW then return NOW end
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  return NOW
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
-- After them, the selling settings: `sell` ('CUR|maxPerUser|salesStartMs|
-- salesEndMs|maxExtensions[|c]', empty for none; no field when all are
-- defaults) and `sections` (see sections()).
-- `sched_floor`: the latest deadline the list schedule may hold (set when
-- the hold time changes). `queue`: 'maxActive|admissionMs' while the event
-- has a waiting room (see queue.lua). `cv`: the settings' stamp (see
-- settings_changed).
local META_FIELDS = { 'capacity', 'ttl_ms', 'max_per_hold', 'held', 'sold', 'v', 'seq', 'hint',
                      'expired', 'orders', 'completed', 'failed', 'sched_floor', 'sell', 'sections',
                      'queue', 'cv' }
-- Those that are always there, and the integer ones.
local META_REQUIRED, META_INTEGERS = 6, 13
-- What a call with the event's settings cached reads: the stamp, the
-- schema version, and every counter a script may count into (each checked).
local META_COUNTERS = { 'cv', 'v', 'held', 'sold', 'seq', 'hint', 'expired', 'orders', 'completed',
                        'failed' }
local COUNTERS_PATTERN = '^%-?%d+,%-?%d+,%-?%d+,%-?%d+,%-?%d+,%-?%d+,%-?%d+,%-?%d+$'

-- Settings parsed by load_meta, by event (tag): { cv, at (ms), set, mt (the
-- metatable that puts `set` behind a call's counters) }. Kept
-- between calls where the scripts run as a library's functions (as a
-- script, each call starts with none), and used while the event's stamp is
-- the same and for at most SETTINGS_FOR_MS after they were read: so a
-- change the stamp does not show (made by hand, or by a version without
-- stamps) is seen within that. At most SETTINGS_MAX events are kept.
local SETTINGS, SETTINGS_N = {}, 0
local SETTINGS_FOR_MS, SETTINGS_MAX = 1000, 10000

-- Stamps the event's settings as changed, for the settings cached by
-- load_meta (this library's and any other's): every script that changes a
-- field load_meta parses calls it. The stamp is the Redis time in µs, so an
-- event made again after it was removed does not find its old one.
-- Returns the new stamp.
-- Also writes `layout`, a value longer than Redis keeps in a listpack
-- (hash-max-listpack-value, 64 by default): the meta hash is then a hash
-- table, where every call's reads and counts find their field at once
-- instead of scanning the hash's fields one after the other.
local LAYOUT = 'a hash table: this value is longer than hash-max-listpack-value (see lib.lua)'
local function settings_changed()
  local t = redis.call('TIME')
  local cv = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('HSET', K.meta, 'cv', cv, 'layout', LAYOUT)
  if SETTINGS[TAG] then SETTINGS[TAG], SETTINGS_N = nil, SETTINGS_N - 1 end
  return cv
end

-- Returns the event's settings and counters, or nil plus a reply when the
-- event does not exist ({ 'not_found' }), was written by an unknown schema
-- version ({ 'schema', v }), or has a field that is not an integer
-- ({ 'damaged', what }: by hand, say). A damaged counter is refused here,
-- before any write, because a script failing on it halfway would keep its
-- earlier writes.
-- Selling settings absent (an event made before they existed, or made
-- without them) read as: currency EUR, no sale window, no per-user limit,
-- no extensions, one section 'general' at price 0.
-- The settings are fields of a table of their own behind the counters
-- (`__index`): with them cached, a call reads and checks only the counters.
local function load_meta()
  local c = SETTINGS[TAG]
  if c then
    local m = redis.call('HMGET', K.meta, unpack(META_COUNTERS))
    local now = now_ms()
    if m[1] == c.cv and m[2] == '1' and m[3] and m[4] and now >= c.at and now - c.at < SETTINGS_FOR_MS
        and string.find(m[3] .. ',' .. m[4] .. ',' .. (m[5] or '0') .. ',' .. (m[6] or '0') .. ','
          .. (m[7] or '0') .. ',' .. (m[8] or '0') .. ',' .. (m[9] or '0') .. ',' .. (m[10] or '0'),
          COUNTERS_PATTERN) then
      EV_SET = c.set
      EV = setmetatable({ held = tonumber(m[3]), sold = tonumber(m[4]), seq = tonumber(m[5]) or 0 }, c.mt)
      return EV
    end
  end
  local m = redis.call('HMGET', K.meta, unpack(META_FIELDS))
  if not m[1] then return nil, { 'not_found' } end
  if tonumber(m[6]) ~= SCHEMA then return nil, { 'schema', tostring(m[6]) } end
  for i = 1, META_INTEGERS do
    local v = m[i]
    if (v or i <= META_REQUIRED) and not (v and string.find(v, '^%-?%d+$')) then
      return nil, { 'damaged', K.meta .. ' field ' .. META_FIELDS[i] .. ' is ' .. (v and ('"' .. v .. '", not an integer') or 'missing') }
    end
  end
  local set = {
    capacity = tonumber(m[1]), ttl_ms = tonumber(m[2]), max_per_hold = tonumber(m[3]),
    max_user = 0, max_ext = 0, currency = 'EUR', sections_text = m[15] or nil,
    sched_floor = tonumber(m[13]),
  }
  if m[16] then
    local qa, qs = string.match(m[16], '^(%d+)|(%d+)$')
    if not qa then
      return nil, { 'damaged', K.meta .. ' field queue is "' .. m[16] .. '", not maxActive|admissionMs' }
    end
    set.queue_max, set.queue_ms = tonumber(qa), tonumber(qs)
  end
  if m[14] then
    local cur, mu, ss, se, me, counting = string.match(m[14], '^(%u%u%u)|(%d*)|(%d*)|(%d*)|(%d*)(|?c?)$')
    if not cur then
      return nil, { 'damaged', K.meta .. ' field sell is "' .. m[14] .. '", not CUR|n|ms|ms|n' }
    end
    set.currency, set.max_user, set.max_ext = cur, tonumber(mu) or 0, tonumber(me) or 0
    set.sales_start, set.sales_end = tonumber(ss), tonumber(se)
    -- '|c': a per-user limit is being set (recount_buyers is counting the
    -- tickets taken before it): holds are counted, not yet limited.
    set.counting = counting == '|c'
  end
  local mt = { __index = set }
  -- An event made before the stamp gets one now.
  local cv = m[17] or settings_changed()
  if not SETTINGS[TAG] then
    if SETTINGS_N >= SETTINGS_MAX then SETTINGS, SETTINGS_N = {}, 0 end
    SETTINGS_N = SETTINGS_N + 1
  end
  SETTINGS[TAG] = { cv = cv, at = now_ms(), set = set, mt = mt }
  EV_SET = set
  EV = setmetatable({ held = tonumber(m[4]), sold = tonumber(m[5]), seq = tonumber(m[7]) or 0 }, mt)
  return EV
end

-- The event's sections, parsed once per call: { id, i, first, last,
-- capacity, price } each, in ticket order. Stored as 'id:capacity:price'
-- joined by ','.
local function sections()
  if EV.secs then return EV.secs end
  local list = {}
  if EV.sections_text then
    local first = 1
    for id, cap, price in string.gmatch(EV.sections_text, '([^:,]+):(%d+):(%d+)') do
      local c = tonumber(cap)
      list[#list + 1] = { id = id, i = #list + 1, first = first, last = first + c - 1,
                          capacity = c, price = tonumber(price), price_s = price }
      first = first + c
    end
  end
  if #list == 0 then
    list[1] = { id = 'general', i = 1, first = 1, last = EV.capacity, capacity = EV.capacity,
                price = 0, price_s = '0' }
  end
  EV_SET.secs = list
  return list
end

-- The section holding ticket t (a number): binary search.
local function section_of(t)
  local list = sections()
  local lo, hi = 1, #list
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if t > list[mid].last then lo = mid + 1 else hi = mid end
  end
  return list[lo]
end

-- Whether the event keeps per-section counters (it has several sections).
local function sectioned()
  return EV.sections_text ~= nil and string.find(EV.sections_text, ',', 1, true) ~= nil
end

-- Adds `by` times the number of `tickets` (numbers or text) in each section
-- to that section's counter `what` ('held' or 'sold'); with `free`, also
-- lowers each section's free-ticket hint to its lowest ticket. Nothing to
-- do for an event of one section: the event's counters are its counters.
local function section_count(tickets, what, by, free)
  if not sectioned() then return end
  local per, lowest = {}, {}
  for _, t in ipairs(tickets) do
    t = tonumber(t)
    local s = section_of(t)
    per[s.i] = (per[s.i] or 0) + by
    if not lowest[s.i] or t < lowest[s.i] then lowest[s.i] = t end
  end
  for i, n in pairs(per) do
    redis.call('HINCRBY', K.meta, what .. ':' .. i, n)
    if free then
      local hint = tonumber(redis.call('HGET', K.meta, 'hint:' .. i) or '0') or 0
      if lowest[i] < hint then redis.call('HSET', K.meta, 'hint:' .. i, lowest[i]) end
    end
  end
end

-- Changes `user`'s count in hash `key` by `by` (text: '3', '-3') and
-- returns the new count; no entry is kept at 0. A count is derived data: one
-- that is not a number, or below 0 after an increase (damaged by hand),
-- starts again from this change instead of failing the call halfway, which
-- would stop every hold, sale and release of its user.
local function hash_count_add(key, user, by)
  local n = redis.pcall('HINCRBY', key, user, by)
  if type(n) == 'table' or (n < 1 and string.byte(by) ~= 45) then -- 45: '-'
    n = tonumber(by)
    if n > 0 then redis.call('HSET', key, user, by) end
  end
  if n <= 0 then redis.pcall('HDEL', key, user) end
  return n
end

-- Changes a user's count of tickets held or bought by `by` (text).
local function user_tickets_add(user, by)
  return hash_count_add(K.utix, user, by)
end

-- A hold record; `amount_s` is its amount as text ('0' when it has none),
-- `counted` whether its tickets count toward utix.
local function parse_hold(rec)
  if not rec then return nil end
  local secret, deadline, first, ext, tickets, amount, counted, user =
    string.match(rec, '^([^|]*)|(%d+)~?(%d*)~?(%d*)|([%d,]*):?(%d*):?(u?)|(.*)$')
  if not secret then return nil end
  deadline = tonumber(deadline)
  -- `named`: the deadline its holdId names; `ext`: extensions so far.
  return { secret = secret, deadline = deadline, named = tonumber(first) or deadline,
           ext = tonumber(ext) or 0, csv = tickets,
           tickets = split_csv(tickets), user = user, amount_s = amount ~= '' and amount or '0',
           counted = counted == 'u' }
end

-- The price field of a record (see above) costing `amount_s`.
local function price_field(amount_s, counted)
  if counted then return ':' .. amount_s .. ':u' end
  return amount_s == '0' and '' or (':' .. amount_s)
end

-- `n` tickets as the text of a count change: '-1' for one taken back.
local function count_text(n, sign)
  if n == 1 then return sign == '-' and '-1' or '1' end
  return (sign == '-' and '-' or '') .. string.format('%d', n)
end

-- Whether a holdId's secret and deadline (text, from the id) are those of
-- hold `h`: an id naming another secret or deadline is not this hold's.
local function names_hold(h, secret, deadline)
  return h.secret == secret and h.named == tonumber(deadline)
end

-- Changes a user's count of live holds by `by` ('1' or '-1') and returns
-- the new count (see hash_count_add).
local function user_count_add(user, by)
  if by == '1' then
    counts_exist = true
  else
    if counts_exist == nil then counts_exist = redis.call('EXISTS', K.uholds) == 1 end
    if not counts_exist then return 0 end
  end
  return hash_count_add(K.uholds, user, by)
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
  local freed, lowest, freed_list = 0, nil, {}
  for _, t in ipairs(h.tickets) do
    if tonumber(redis.call('HGET', K.owner, t)) == seq then
      redis.call('SETBIT', K.taken, t, 0)
      redis.call('HDEL', K.owner, t)
      freed = freed + 1
      freed_list[freed] = t
      if not lowest or t < lowest then lowest = t end
    end
  end
  redis.call('HDEL', K.holds, seq)
  user_hold_done(h.user)
  if h.counted then user_tickets_add(h.user, count_text(#h.tickets, '-')) end
  if freed > 0 then
    redis.call('HINCRBY', K.meta, 'held', -freed)
    local hint = tonumber(redis.call('HGET', K.meta, 'hint') or '1')
    if lowest < hint then redis.call('HSET', K.meta, 'hint', lowest) end
    section_count(freed_list, 'held', -1, true)
  end
  return freed
end

-- Releases expired holds, earliest deadline first, at most `max` of them:
-- first those of the list schedule, then those of `due`. Entries of holds that were bought or cancelled are dropped on
-- the way (up to 16 * max of them, so one call stays short); an entry whose
-- hold's deadline moved is rescored.
-- Returns released, next deadline (-1: none scheduled; `now`: more to do),
-- and fills `lags` (when a table) with each release's lateness in ms.
local function sweep(now, max, lags)
  local released, dropped = 0, 0
  local function expire(seq, h)
    free_hold(tonumber(seq), h)
    released = released + 1
    if lags then lags[#lags + 1] = now - h.deadline end
  end
  local next_list = -1
  while dropped < max * 16 do
    local head = redis.call('LINDEX', K.sched, 0)
    if not head then break end
    local h = parse_hold(redis.call('HGET', K.holds, head))
    if not h or (h.ext > 0 and h.deadline > now) then
      -- Bought, cancelled, or extended (then `due` has it at its deadline).
      redis.call('LPOP', K.sched)
      dropped = dropped + 1
    elseif h.deadline <= now then
      if released >= max then next_list = now; break end
      expire(head, h)
      redis.call('LPOP', K.sched)
    else
      next_list = h.deadline
      break
    end
  end
  if dropped >= max * 16 then next_list = now end
  local next_due = -1
  while released < max and dropped < max * 16 do
    local due = redis.call('ZRANGE', K.due, '-inf', now, 'BYSCORE', 'LIMIT', 0, max - released)
    if #due == 0 then break end
    local recs = redis.call('HMGET', K.holds, unpack(due))
    local gone = {}
    for i, seq in ipairs(due) do
      local h = parse_hold(recs[i])
      if not h then
        gone[#gone + 1] = seq
        dropped = dropped + 1
      elseif h.deadline <= now then
        expire(seq, h)
        gone[#gone + 1] = seq
      else
        redis.call('ZADD', K.due, h.deadline, seq)
      end
    end
    if #gone > 0 then redis.call('ZREM', K.due, unpack(gone)) end
  end
  local first = redis.call('ZRANGE', K.due, 0, 0, 'WITHSCORES')
  if first[2] then next_due = tonumber(first[2]) end
  if next_due >= 0 and next_due <= now then next_due = now end
  if released > 0 then redis.call('HINCRBY', K.meta, 'expired', released) end
  local next_deadline = next_list
  if next_deadline < 0 or (next_due >= 0 and next_due < next_deadline) then next_deadline = next_due end
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


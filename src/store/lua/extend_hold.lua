-- extend_hold: moves a live hold's deadline to now + the event's hold
-- time (behind a waiting room, no later than the admission runs out), at
-- most maxExtensions times per hold. The holdId stays the same
-- (the record keeps the deadline it names); the hold is rescheduled in
-- `due` and its list entry is dropped when the sweep meets it.
-- KEYS[1..9]: the event's keys (see lib.lua)
-- ARGV[1]: hold seq   ARGV[2]: hold secret   ARGV[3]: the deadline the holdId names
-- ARGV[4]: userId
-- Returns: { 'ok', deadlineMs, nowMs, 't1,..', userId, amount, currency }
--        | { 'not_found' } | { 'forbidden' } | { 'expired', released (1|0) }
--        | { 'extension_limit', max } | { 'schema', v } | { 'damaged', what }
local meta, err = load_meta()
if not meta then return err end
local now = now_ms()
local seq = ARGV[1]
local h = parse_hold(redis.call('HGET', K.holds, seq))
if h and not names_hold(h, ARGV[2], ARGV[3]) then return { 'not_found' } end
if not h then
  -- Gone: bought (then it has an order), or expired and released. Only a
  -- hold number this event has issued, whose deadline has passed, counts
  -- as expired.
  if redis.call('HEXISTS', K.orders, seq) == 0 and tonumber(seq) <= meta.seq
    and tonumber(ARGV[3]) <= now then
    return { 'expired', 0 }
  end
  return { 'not_found' }
end
if h.user ~= ARGV[4] then return { 'forbidden' } end
if h.deadline <= now then
  free_hold(tonumber(seq), h)
  count_expired(1)
  return { 'expired', 1 }
end
if h.ext >= meta.max_ext then return { 'extension_limit', meta.max_ext } end
h.ext = h.ext + 1
local deadline = now + meta.ttl_ms
if meta.queue_max then
  -- Behind a waiting room a hold lasts no longer than its admission (and
  -- an extension never shortens it).
  local j = redis.call('HGET', TAG .. 'qu', h.user)
  local until_ms = j and tonumber(redis.call('ZSCORE', TAG .. 'qa', j) or '0') or 0
  if until_ms < deadline then deadline = math.max(until_ms, h.deadline) end
end
h.deadline = deadline
local deadline_s = fmt_int(h.deadline)
redis.call('HSET', K.holds, seq, hold_record(h, h.counted))
redis.call('ZADD', K.due, deadline_s, seq)
return { 'ok', deadline_s, now, h.csv, h.user, h.amount_s, meta.currency }

-- get_hold: reads a live hold, judging its deadline by the server clock.
-- Read-only.
-- KEYS[1..9]: the event's keys (see lib.lua)
-- ARGV[1]: hold seq   ARGV[2]: hold secret   ARGV[3]: deadline named by the holdId
-- Returns: { 'ok', deadlineMs, nowMs, 't1,..', userId, amount, currency } | { 'not_found' }
local h = parse_hold(redis.call('HGET', K.holds, tonumber(ARGV[1])))
if not h or not names_hold(h, ARGV[2], ARGV[3]) then return { 'not_found' } end
local now = now_ms()
if h.deadline <= now then return { 'not_found' } end
return { 'ok', h.deadline, now, h.csv, h.user, h.amount_s, currency_of_event() }

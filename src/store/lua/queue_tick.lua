-- queue_tick: one pass of an event's waiting room (releases expired holds
-- first, so that the counts are true; opens the line when sales open;
-- expires admissions; lets places in), and its state. Run by `serve` a few
-- times a second for the events whose places are polled, and by inspect.
-- KEYS[1..9]: the event's keys (see lib.lua)
-- ARGV[1]: a new random seed (24 hex digits), used if the line opens now
-- ARGV[2]: most admitted places to list
-- ARGV[3]: '1' to only read (no pass: for inspect)
-- Returns: { 'ok', then queue_reply (see queue.lua) } | { 'disabled' }
--        | { 'not_found' } | { 'schema', v } | { 'damaged', what }
local meta, err = load_meta()
if not meta then return err end
if not meta.queue_max then return { 'disabled' } end
local now = now_ms()
local st = queue_state()
if ARGV[3] == '1' then
  st.active = redis.call('ZCOUNT', K.qa, '(' .. fmt_int(now), '+inf')
  local c = redis.call('HMGET', K.meta, 'held', 'sold')
  st.available = meta.capacity - (tonumber(c[1]) or 0) - (tonumber(c[2]) or 0)
else
  sweep(now, 1000)
  queue_open(meta, st, now, ARGV[1])
  queue_admit(meta, st, now)
end
local reply = queue_reply(meta, st, now, tonumber(ARGV[2]))
table.insert(reply, 1, 'ok')
return reply

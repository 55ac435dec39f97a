-- queue_join: a place in an event's waiting room for a user; the same user
-- again gets the same place. Then a pass of the room (see queue_tick), so
-- a place with room ahead of it is let in at once.
-- KEYS[1..9]: the event's keys (see lib.lua)
-- ARGV[1]: userId   ARGV[2]: a new random MAC key (32 hex digits), kept if
-- the room has none yet   ARGV[3]: a new random seed (see queue_tick)
-- Returns: { 'ok', created (1|0), j, then queue_reply (none listed) plus, for j:
--            admittedUntil|-1 }
--        | { 'disabled' } | { 'not_found' } | { 'schema', v } | { 'damaged', what }
local meta, err = load_meta()
if not meta then return err end
if not meta.queue_max then return { 'disabled' } end
local now = now_ms()
sweep(now, 1000)
local st = queue_state()
queue_open(meta, st, now, ARGV[3])
if st.key == '' then
  redis.call('HSETNX', K.q, 'key', ARGV[2])
  st.key = redis.call('HGET', K.q, 'key')
end
local user = ARGV[1]
local j, created = tonumber(redis.call('HGET', K.qu, user)), 0
if not j then
  j = redis.call('HINCRBY', K.q, 'n', 1)
  redis.call('HSET', K.qu, user, j)
  st.n, created = j, 1
end
queue_admit(meta, st, now)
local reply = queue_reply(meta, st, now, 0)
table.insert(reply, 1, j)
table.insert(reply, 1, created)
table.insert(reply, 1, 'ok')
reply[#reply + 1] = tonumber(redis.call('ZSCORE', K.qa, j) or '-1')
return reply

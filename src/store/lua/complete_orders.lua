-- complete_orders: marks orders completed once every sink has them, then
-- acknowledges and deletes their jobs. Safe to repeat (a second call for the
-- same job changes nothing).
-- KEYS[1..8]: the event's keys (see lib.lua)   KEYS[9]: last errors of jobs (hash)
-- ARGV: streamId, seq, streamId, seq, ...
-- Returns: { orders completed now, nowMs }
local now = now_ms()
local done = 0
for i = 1, #ARGV, 2 do
  local id, seq = ARGV[i], ARGV[i + 1]
  local o = parse_order(redis.call('HGET', K.orders, seq))
  if o and o.status == 'pending' then
    redis.call('HSET', K.orders, seq,
      table.concat({ 'completed', o.secret, o.hold_secret, o.created, fmt_int(now), o.csv, o.user }, '|'))
    done = done + 1
  end
  redis.call('XACK', K.jobs, 'purchase', id)
  redis.call('XDEL', K.jobs, id)
  redis.call('HDEL', KEYS[9], id)
end
return { done, now }

-- publish_stream: appends orders to a sink stream, each order once: an
-- order already published (within the retention) is skipped, so a job
-- redelivered after a worker died is not published twice. Standalone (no
-- prelude, no event keys).
-- KEYS[1]: the sink stream   KEYS[2]: its published-order index (zset, same slot)
-- ARGV[1]: retention in ms
-- ARGV[2..]: orderId, eventId, userId, ticketIds (JSON), createdAt, repeated
-- Returns: number of orders appended
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[1]))
local added = 0
for i = 2, #ARGV, 5 do
  -- Append first, then remember: should the append fail, the order is not
  -- marked as published and the retry appends it.
  if not redis.call('ZSCORE', KEYS[2], ARGV[i]) then
    redis.call('XADD', KEYS[1], '*', 'orderId', ARGV[i], 'eventId', ARGV[i + 1], 'userId', ARGV[i + 2],
      'ticketIds', ARGV[i + 3], 'createdAt', ARGV[i + 4])
    redis.call('ZADD', KEYS[2], now, ARGV[i])
    added = added + 1
  end
end
return added

-- publish_stream: appends orders to a sink stream, each order once: an
-- order already published (within the retention) is skipped, so a job
-- redelivered after a worker died is not published twice. Uses the prelude's
-- helpers, not its event keys.
-- KEYS[1]: the sink stream   KEYS[2]: its published-order index (zset, same slot)
-- ARGV[1]: retention in ms   ARGV[2]: about how many entries the stream
-- keeps (XADD MAXLEN ~; 0: all)
-- ARGV[3..]: orderId, eventId, userId, ticketIds (JSON), createdAt, amount, currency, type,
--            repeated
-- Returns: number of messages appended
-- A message is known in the index by its orderId for a purchase (as
-- before messages had a type), else by 'orderId|type'.
-- Everything that could fail is checked before the first write: Redis keeps
-- the writes of a script that fails halfway, and an order appended but not
-- yet remembered would be appended again by the retry.
local PER = 8
local FIRST = 3
if (#ARGV - FIRST + 1) % PER ~= 0 then
  return redis.error_reply('publish_stream: messages come as 8 arguments each')
end
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'stream' and kind ~= 'none' then
  return redis.error_reply('publish_stream: ' .. KEYS[1] .. ' is a ' .. kind .. ', not a stream')
end
local maxlen = ARGV[2] ~= '0' and ARGV[2] or nil
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[1]))
-- Which orders were published already: one ZMSCORE for the call.
local ids = {}
for i = FIRST, #ARGV, PER do
  local kind = ARGV[i + 7]
  ids[#ids + 1] = kind == 'purchase' and ARGV[i] or (ARGV[i] .. '|' .. kind)
end
if #ids == 0 then return 0 end
local scores = collect_in_chunks(ids, function(...) return redis.call('ZMSCORE', KEYS[2], ...) end)
local now_s = fmt_int(now)
local seen, remember = {}, {}
for j, id in ipairs(ids) do
  if not scores[j] and not seen[id] then
    seen[id] = true
    local i = FIRST + (j - 1) * PER
    if maxlen then
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'orderId', ARGV[i], 'eventId', ARGV[i + 1],
        'userId', ARGV[i + 2], 'ticketIds', ARGV[i + 3], 'createdAt', ARGV[i + 4], 'amount', ARGV[i + 5],
        'currency', ARGV[i + 6], 'type', ARGV[i + 7])
    else
      redis.call('XADD', KEYS[1], '*', 'orderId', ARGV[i], 'eventId', ARGV[i + 1], 'userId', ARGV[i + 2],
        'ticketIds', ARGV[i + 3], 'createdAt', ARGV[i + 4], 'amount', ARGV[i + 5],
        'currency', ARGV[i + 6], 'type', ARGV[i + 7])
    end
    remember[#remember + 1] = now_s
    remember[#remember + 1] = id
  end
end
-- Remembered once every order is appended (see the checks at the top).
in_chunks(remember, function(...) redis.call('ZADD', KEYS[2], ...) end)
return #remember / 2

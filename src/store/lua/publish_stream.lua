-- publish_stream: appends orders to a sink stream, each order once: an
-- order already published is skipped, so a job redelivered after a worker
-- died is not published twice. Uses the prelude's helpers, not its event
-- keys.
-- What was published is kept as bits: one bitmap per event and message
-- type, bit n for order number n (an order's `.o<n>.`), a bit per order
-- where a sorted-set member cost ~136 bytes. A bitmap outlives the last
-- publish to it by the retention. Orders published by a version before
-- bitmaps are in the sorted set KEYS[2] (by orderId for a purchase, else
-- 'orderId|type'), read, and trimmed by the retention, until it empties.
-- KEYS[1]: the sink stream   KEYS[2]: that older index (same slot)
-- KEYS[3..]: the bitmaps of this call's messages (same slot)
-- ARGV[1]: retention in ms   ARGV[2]: about how many entries the stream
-- keeps (XADD MAXLEN ~; 0: all)
-- ARGV[3..]: orderId, eventId, userId, ticketIds (JSON), createdAt, amount, currency, type,
--            its bitmap (an index into KEYS), its order number; repeated
-- Returns: number of messages appended
-- Everything that could fail is checked before the first write: Redis keeps
-- the writes of a script that fails halfway, and an order appended but not
-- yet remembered would be appended again by the retry.
local PER, FIRST = 10, 3
if (#ARGV - FIRST + 1) % PER ~= 0 then
  return redis.error_reply('publish_stream: messages come as 10 arguments each')
end
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'stream' and kind ~= 'none' then
  return redis.error_reply('publish_stream: ' .. KEYS[1] .. ' is a ' .. kind .. ', not a stream')
end
for k = 3, #KEYS do
  local t = redis.call('TYPE', KEYS[k]).ok
  if t ~= 'string' and t ~= 'none' then
    return redis.error_reply('publish_stream: ' .. KEYS[k] .. ' is a ' .. t .. ', not a bitmap')
  end
end
for i = FIRST, #ARGV, PER do
  local k, n = tonumber(ARGV[i + 8]), tonumber(ARGV[i + 9])
  if not k or k < 3 or k > #KEYS or k % 1 ~= 0 or not n or n < 0 or n >= 4294967296 or n % 1 ~= 0 then
    return redis.error_reply('publish_stream: message ' .. ARGV[i] .. ' names no bitmap and order number')
  end
end
local retention = ARGV[1]
local maxlen = ARGV[2] ~= '0' and ARGV[2] or nil
if #ARGV < FIRST then return 0 end
-- The older index, while it lasts: one ZMSCORE for the call.
local before = {}
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms() - tonumber(retention))
  local ids = {}
  for i = FIRST, #ARGV, PER do
    local t = ARGV[i + 7]
    ids[#ids + 1] = t == 'purchase' and ARGV[i] or (ARGV[i] .. '|' .. t)
  end
  if redis.call('EXISTS', KEYS[2]) == 1 then
    before = collect_in_chunks(ids, function(...) return redis.call('ZMSCORE', KEYS[2], ...) end)
  end
end
local seen, marks, touched = {}, {}, {}
local j = 0
for i = FIRST, #ARGV, PER do
  j = j + 1
  local key, n = KEYS[tonumber(ARGV[i + 8])], ARGV[i + 9]
  local id = key .. '#' .. n
  if not seen[id] and not before[j] and redis.call('GETBIT', key, n) == 0 then
    seen[id] = true
    if maxlen then
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'orderId', ARGV[i], 'eventId', ARGV[i + 1],
        'userId', ARGV[i + 2], 'ticketIds', ARGV[i + 3], 'createdAt', ARGV[i + 4], 'amount', ARGV[i + 5],
        'currency', ARGV[i + 6], 'type', ARGV[i + 7])
    else
      redis.call('XADD', KEYS[1], '*', 'orderId', ARGV[i], 'eventId', ARGV[i + 1], 'userId', ARGV[i + 2],
        'ticketIds', ARGV[i + 3], 'createdAt', ARGV[i + 4], 'amount', ARGV[i + 5],
        'currency', ARGV[i + 6], 'type', ARGV[i + 7])
    end
    marks[#marks + 1] = { key, n }
    touched[key] = true
  end
end
-- Remembered once every order is appended (see the checks at the top).
for _, m in ipairs(marks) do redis.call('SETBIT', m[1], m[2], 1) end
for key in pairs(touched) do redis.call('PEXPIRE', key, retention) end
return #marks

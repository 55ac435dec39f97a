-- own_jobs: the jobs one consumer holds, for a worker whose call for them
-- failed (a lost reply of a read, a batch that could not be published or
-- completed): it takes them back without counting a delivery, since the
-- failed try was the same delivery. Claiming them again (JUSTID: no count)
-- restarts their idle time, so no other worker takes them over meanwhile.
-- A pending entry whose job was deleted from the stream is acknowledged, as
-- XCLAIM does on Redis 7, so it is not asked for again. Standalone.
-- KEYS[1]: job stream
-- ARGV[1]: consumer group   ARGV[2]: consumer   ARGV[3]: at most this many
-- Returns: { {streamId, deliveries, {field, value, ...}}, ... }, oldest first
local count = tonumber(ARGV[3])
local out = {}
-- A few rounds at most: a round may find only deleted entries.
for _ = 1, 10 do
  local ok, rows = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', count, ARGV[2])
  if not ok or #rows == 0 then return out end
  local ids = {}
  for _, row in ipairs(rows) do ids[#ids + 1] = row[1] end
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(ids), 'JUSTID')
  for _, row in ipairs(rows) do
    local entry = redis.call('XRANGE', KEYS[1], row[1], row[1])[1]
    if entry then
      out[#out + 1] = { row[1], row[4], entry[2] }
    else
      redis.call('XACK', KEYS[1], ARGV[1], row[1])
    end
  end
  if #out > 0 or #rows < count then return out end
end
return out

-- own_jobs: the jobs one consumer holds, for a worker whose call for them
-- failed (a lost reply of a read, a batch that could not be published or
-- completed): it takes them back without counting a delivery, since the
-- failed try was the same delivery. A pending entry whose job was deleted
-- from the stream is acknowledged, as XCLAIM does, so it is not asked for
-- again. Standalone (no prelude).
-- KEYS[1]: job stream
-- ARGV[1]: consumer group   ARGV[2]: consumer   ARGV[3]: at most this many
-- Returns: { {streamId, deliveries, {field, value, ...}}, ... }, oldest first
local ok, rows = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', tonumber(ARGV[3]), ARGV[2])
if not ok then return {} end
local out = {}
for _, row in ipairs(rows) do
  local entry = redis.call('XRANGE', KEYS[1], row[1], row[1])[1]
  if entry then
    out[#out + 1] = { row[1], row[4], entry[2] }
  else
    redis.call('XACK', KEYS[1], ARGV[1], row[1])
  end
end
return out

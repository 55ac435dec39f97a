-- forget_idle_consumers: removes from a job stream's consumer group the
-- consumers that hold no job and have not been heard from for a while
-- (workers that died, whose jobs others took over). In one script, so a
-- consumer cannot take a job between the check and its removal. A worker
-- still alive is only idle between reads; removed anyway, it is added again
-- by its next read, with nothing lost. Standalone (no prelude).
-- KEYS[1]: job stream
-- ARGV[1]: consumer group   ARGV[2]: least idle time (ms)   ARGV[3]: the caller's own name (kept)
-- Returns: the number of consumers removed.
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return 0 end
local min_idle, removed = tonumber(ARGV[2]), 0
for _, c in ipairs(consumers) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f.name ~= ARGV[3] and tonumber(f.pending) == 0 and tonumber(f.idle) >= min_idle then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f.name)
    removed = removed + 1
  end
end
return removed

-- complete_orders: marks orders completed once every sink has them, then
-- acknowledges their jobs and trims acknowledged jobs off the stream. Safe to
-- repeat (a second call for the same job changes nothing).
-- KEYS[1..9]: the event's keys (see lib.lua)   KEYS[10]: last errors of jobs (hash)
-- KEYS[11]: dead-letter stream
-- ARGV[1]: the job stream's consumer group
-- ARGV[2..]: streamId, seq, streamId, seq, ...
-- Returns: { orders completed now, nowMs }
--
-- An order already `failed` is completed too: its job was dead-lettered
-- while this worker still had it (taken over more than max_attempts times,
-- as when claim_idle is shorter than a delivery), yet every sink has it now.
-- Its dead letters go when among the newest DEAD_SCAN entries (an older
-- one is dropped by `dlq retry`, which re-queues no completed order).

local GROUP = ARGV[1]

-- Drops acknowledged jobs from the head of the job stream: everything before
-- the oldest pending job, or before the last delivered one when none is
-- pending. Trimming whole stream nodes ('~') is far cheaper than XDEL per job.
local function trim_jobs()
  local pending = redis.call('XPENDING', K.jobs, GROUP)
  local minid = pending[2]
  if not minid then
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', K.jobs)) do
      for i = 1, #g, 2 do
        if g[i] == 'name' and g[i + 1] ~= GROUP then break end
        if g[i] == 'last-delivered-id' then minid = g[i + 1] end
      end
    end
  end
  if minid then redis.call('XTRIM', K.jobs, 'MINID', '~', minid) end
end

local now = fmt_int(now_ms())
local done, ids, seqs = 0, {}, {}
for i = 2, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
  seqs[#seqs + 1] = ARGV[i + 1]
end
local recs = collect_in_chunks(seqs, function(...) return redis.call('HMGET', K.orders, ...) end)
local DEAD_SCAN = 1000
local updates, seen, revived, n_revived = {}, {}, {}, 0
for i, rec in ipairs(recs) do
  -- Only a pending (or failed) order changes: 'pending|' is the record's
  -- first 8 bytes. An order named twice in one call changes once.
  local pending = rec and string.sub(rec, 1, 8) == 'pending|'
  local failed = rec and not pending and string.sub(rec, 1, 7) == 'failed|'
  if (pending or failed) and not seen[seqs[i]] then
    seen[seqs[i]] = true
    local o = parse_order(rec)
    if not o then error('order ' .. seqs[i] .. ' of ' .. K.orders .. ' is damaged: ' .. rec) end
    updates[#updates + 1] = seqs[i]
    updates[#updates + 1] = order_record(o, 'completed', now)
    done = done + 1
    if failed then revived[seqs[i]] = true; n_revived = n_revived + 1 end
  end
end
if #updates > 0 then
  in_chunks(updates, function(...) redis.call('HSET', K.orders, ...) end)
  redis.call('HINCRBY', K.meta, 'completed', done)
end
if n_revived > 0 then
  -- Every dead letter of a revived order goes (it may have been retried
  -- and dead-lettered again meanwhile).
  redis.call('HINCRBY', K.meta, 'failed', -n_revived)
  local gone = {}
  for _, e in ipairs(redis.call('XREVRANGE', KEYS[NKEYS + 2], '+', '-', 'COUNT', DEAD_SCAN)) do
    local f = e[2]
    for j = 1, #f, 2 do
      if f[j] == 'seq' and revived[f[j + 1]] then gone[#gone + 1] = e[1] end
    end
  end
  in_chunks(gone, function(...) redis.call('XDEL', KEYS[NKEYS + 2], ...) end)
end
in_chunks(ids, function(...) redis.call('XACK', K.jobs, GROUP, ...) end)
trim_jobs()
in_chunks(ids, function(...) redis.call('HDEL', KEYS[NKEYS + 1], ...) end)
return { done, tonumber(now) }

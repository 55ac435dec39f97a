-- dead_letter: moves jobs that failed too often to the event's dead-letter
-- stream with their last error, and marks their orders failed.
-- KEYS[1..9]: the event's keys (see lib.lua)   KEYS[10]: dead-letter stream
-- KEYS[11]: last errors of jobs (hash); an empty error argument takes the recorded one
-- ARGV[1]: the job stream's consumer group
-- ARGV[2..]: streamId, seq, attempts, error, ... (seq may be '' for a job too
--       damaged to name its order)
-- Returns: { jobs moved }
local now = now_ms()
local moved = 0
local group = ARGV[1]
for i = 2, #ARGV, 4 do
  local id, seq, attempts, err = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if err == '' then err = redis.call('HGET', KEYS[NKEYS + 2], id) or 'delivery attempts exhausted' end
  local entry = redis.call('XRANGE', K.jobs, id, id)
  if #entry > 0 then
    local fields = entry[1][2]
    fields[#fields + 1] = 'jobId'; fields[#fields + 1] = id
    fields[#fields + 1] = 'attempts'; fields[#fields + 1] = attempts
    fields[#fields + 1] = 'error'; fields[#fields + 1] = err
    fields[#fields + 1] = 'failedMs'; fields[#fields + 1] = fmt_int(now)
    redis.call('XADD', KEYS[NKEYS + 1], '*', unpack(fields))
    moved = moved + 1
  end
  if seq ~= '' then
    local o = parse_order(redis.call('HGET', K.orders, seq))
    if o and o.status == 'pending' then
      redis.call('HSET', K.orders, seq,
        order_record(o, 'failed', fmt_int(now)))
      redis.call('HINCRBY', K.meta, 'failed', 1)
    end
  end
  -- Acknowledged only: the entry goes with the next trim of acknowledged
  -- jobs (complete_orders). Deleting it from the middle of the stream
  -- would leave Redis unable to say how many jobs wait (XINFO lag).
  redis.call('XACK', K.jobs, group, id)
  redis.call('HDEL', KEYS[NKEYS + 2], id)
end
return { moved }

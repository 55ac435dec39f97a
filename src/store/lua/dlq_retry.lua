-- dlq_retry: puts dead-lettered jobs back on the job stream (their orders
-- become pending again) and removes them from the dead-letter stream. Safe
-- to run twice: a job already retried is no longer in the dead-letter stream.
-- KEYS[1..9]: the event's keys (see lib.lua)   KEYS[10]: dead-letter stream
-- ARGV[1]: order seq to retry, or '' for all
-- ARGV[2]: at most this many entries per call
-- Returns: { retried, remaining dead letters }
local want, max = ARGV[1], tonumber(ARGV[2])
local retried = 0
local cursor = '-'
while retried < max do
  local entries = redis.call('XRANGE', KEYS[10], cursor, '+', 'COUNT', 200)
  if #entries == 0 then break end
  for _, e in ipairs(entries) do
    local id, f = e[1], e[2]
    local fields = {}
    for i = 1, #f, 2 do fields[f[i]] = f[i + 1] end
    if retried < max and (want == '' or fields.seq == want) then
      redis.call('XADD', K.jobs, '*', 'seq', fields.seq or '', 'secret', fields.secret or '',
        'userId', fields.userId or '', 'ticketIds', fields.ticketIds or '', 'createdMs', fields.createdMs or '0')
      if fields.seq then
        local o = parse_order(redis.call('HGET', K.orders, fields.seq))
        if o and o.status == 'failed' then
          redis.call('HSET', K.orders, fields.seq,
            order_record(o, 'pending', ''))
          redis.call('HINCRBY', K.meta, 'failed', -1)
        end
      end
      redis.call('XDEL', KEYS[10], id)
      retried = retried + 1
    end
    cursor = '(' .. id
  end
end
return { retried, redis.call('XLEN', KEYS[10]) }

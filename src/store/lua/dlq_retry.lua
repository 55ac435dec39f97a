-- dlq_retry: puts dead-lettered jobs back on the job stream (their orders
-- become pending again) and removes them from the dead-letter stream. Safe
-- to run twice: a job already retried is no longer in the dead-letter stream.
-- Looks at a bounded number of entries per call, so a long dead-letter
-- stream never blocks Redis for long: the caller goes on from the entry
-- returned.
-- KEYS[1..9]: the event's keys (see lib.lua)   KEYS[10]: dead-letter stream
-- ARGV[1]: order seq to retry, or '' for all
-- ARGV[2]: at most this many entries retried per call
-- ARGV[3]: go on after this entry id ('' : from the first)
-- ARGV[4]: at most this many entries looked at per call
-- ARGV[5]: the last entry to look at ('': the stream's last entry now, which
--          the reply names for the following calls, so that jobs
--          dead-lettered again meanwhile wait for the next retry)
-- Returns: { retried, remaining dead letters, entry id to go on after ('' : the end was reached),
--            last entry to look at }
local want, max, after, budget = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local last_entry = ARGV[5]
-- For a job written before jobs carried their currency.
local currency = currency_of_event()
if last_entry == '' then
  local newest = redis.call('XREVRANGE', KEYS[NKEYS + 1], '+', '-', 'COUNT', 1)
  if #newest == 0 then return { 0, 0, '', '' } end
  last_entry = newest[1][1]
end
local retried, looked = 0, 0
local cursor = after == '' and '-' or '(' .. after
local last = after
local at_end = false
while retried < max and looked < budget do
  local entries = redis.call('XRANGE', KEYS[NKEYS + 1], cursor, last_entry, 'COUNT', math.min(200, budget - looked))
  if #entries == 0 then at_end = true; break end
  for _, e in ipairs(entries) do
    if retried >= max then break end
    local id, f = e[1], e[2]
    looked = looked + 1
    local fields = {}
    for i = 1, #f, 2 do fields[f[i]] = f[i + 1] end
    if want == '' or fields.seq == want then
      local o = fields.seq and parse_order(redis.call('HGET', K.orders, fields.seq))
      if o and (o.state == 'completed' or o.state == 'cancelled' or o.state == 'refunded'
        or o.state == 'refund_due') then
        -- Published after all (see complete_orders), or no longer sold
        -- (its cancellation is published instead): nothing to retry.
        redis.call('XDEL', KEYS[NKEYS + 1], id)
      else
        redis.call('XADD', K.jobs, '*', 'seq', fields.seq or '', 'secret', fields.secret or '',
          'userId', fields.userId or '', 'ticketIds', fields.ticketIds or '', 'createdMs', fields.createdMs or '0',
          'amount', fields.amount or '0', 'currency', fields.currency or currency,
          'type', fields.type or 'purchase')
        if o and o.status == 'failed' then
          redis.call('HSET', K.orders, fields.seq, order_record(o, 'pending', ''))
          redis.call('HINCRBY', K.meta, 'failed', -1)
        end
        redis.call('XDEL', KEYS[NKEYS + 1], id)
        retried = retried + 1
      end
    end
    last = id
    cursor = '(' .. id
  end
end
return { retried, redis.call('XLEN', KEYS[NKEYS + 1]), at_end and '' or last, last_entry }

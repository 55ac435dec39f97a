-- inspect_event: a read-only view of one event for operators: counters, the
-- holds due soonest, and what is overdue (past its deadline, not released
-- yet). Walks at most ARGV[1] schedule entries, so it never blocks Redis for
-- long however many holds there are.
-- KEYS[1..9]: the event's keys (see lib.lua)
-- ARGV[1]: most schedule entries to read   ARGV[2]: most holds to return
-- ARGV[3]: only holds of this userId ('' for all)
-- Returns: { nowMs, capacity, held, sold, ttl_ms, max_per_hold, expired, orders, completed, failed,
--            liveHolds (scheduled), overdueHolds, overdueTickets, oldestOverdueDeadlineMs (-1),
--            expiringIn10s, expiringIn60s, complete (1: the walk saw every due hold),
--            currency, orders paid, cancelled, refunded, refund_due, sections n, then 7 per section: id, firstTicket, lastTicket, price,
--            held (overdue included), sold, overdue tickets,
--            then 6 fields per returned hold: seq, secret, the deadline its id names,
--            deadlineMs, 't1,..', userId }
--        | { 'not_found' } | { 'schema', v } | { 'damaged', what }
local meta, err = load_meta()
if not meta then return err end
local now = now_ms()
local max_walk, max_holds, user = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local m = redis.call('HMGET', K.meta, 'expired', 'orders', 'completed', 'failed', 'paid', 'cancelled',
  'refunded', 'refund_due')
local overdue, overdue_tickets, oldest, in10, in60 = 0, 0, -1, 0, 0
local holds, returned = {}, 0
-- Overdue tickets per section (sectioned events only).
local overdue_in = {}
local walked, complete = 0, 0
local chunk = 500
-- The older list schedule first (its holds are due before any of `due`'s
-- only while the hold time did not change; the counts do not depend on it),
-- then `due` in deadline order.
local in_list = redis.call('LLEN', K.sched)
while true do
  if walked >= max_walk then break end
  local seqs
  if walked < in_list then
    seqs = redis.call('LRANGE', K.sched, walked, math.min(walked + chunk, in_list) - 1)
  else
    seqs = redis.call('ZRANGE', K.due, walked - in_list, walked - in_list + chunk - 1)
  end
  if #seqs == 0 then complete = 1; break end
  local recs = redis.call('HMGET', K.holds, unpack(seqs))
  local past_window = false
  for i, rec in ipairs(recs) do
    local h = parse_hold(rec)
    if h then
      if h.deadline <= now then
        overdue = overdue + 1
        overdue_tickets = overdue_tickets + #h.tickets
        if sectioned() then
          for _, t in ipairs(h.tickets) do
            local x = section_of(t)
            overdue_in[x.i] = (overdue_in[x.i] or 0) + 1
          end
        end
        if oldest < 0 or h.deadline < oldest then oldest = h.deadline end
      else
        if h.deadline <= now + 10000 then in10 = in10 + 1 end
        if h.deadline <= now + 60000 then in60 = in60 + 1 else past_window = true end
        if returned < max_holds and (user == '' or h.user == user) then
          returned = returned + 1
          holds[#holds + 1] = seqs[i]
          holds[#holds + 1] = h.secret
          holds[#holds + 1] = h.named
          holds[#holds + 1] = h.deadline
          holds[#holds + 1] = h.csv
          holds[#holds + 1] = h.user
        end
      end
    end
  end
  walked = walked + #seqs
  if past_window and returned >= max_holds and walked >= in_list then complete = 1; break end
end
local reply = { now, meta.capacity, meta.held, meta.sold, meta.ttl_ms, meta.max_per_hold,
  tonumber(m[1] or '0'), tonumber(m[2] or '0'), tonumber(m[3] or '0'), tonumber(m[4] or '0'),
  redis.call('HLEN', K.holds), overdue, overdue_tickets, oldest, in10, in60, complete }
local list = sections()
reply[#reply + 1] = meta.currency
for i = 5, 8 do reply[#reply + 1] = tonumber(m[i] or '0') or 0 end
reply[#reply + 1] = #list
for i, x in ipairs(list) do
  local held, sold = meta.held, meta.sold
  if #list > 1 then
    local c = redis.call('HMGET', K.meta, 'held:' .. i, 'sold:' .. i)
    held, sold = tonumber(c[1] or '0') or 0, tonumber(c[2] or '0') or 0
  end
  for _, v in ipairs({ x.id, x.first, x.last, fmt_int(x.price), held, sold,
                       #list > 1 and (overdue_in[i] or 0) or overdue_tickets }) do
    reply[#reply + 1] = v
  end
end
for _, v in ipairs(holds) do reply[#reply + 1] = v end
return reply

-- cancel: releases a live hold before its deadline.
-- KEYS[1..9]: the event's keys (see lib.lua)
-- ARGV[1]: 'h' (ARGV[2] = hold seq, ARGV[3] = hold secret, ARGV[4] = userId,
--          or '' for an operator acting for the user, ARGV[5] = the deadline
--          named by the holdId)
--          | 't' (ARGV[2] = ticket id: the hold holding it, operator only)
-- Returns: { 'ok', tickets released } | { 'not_found' } | { 'forbidden' } | { 'not_held' } | { 'schema', v } | { 'damaged', what }
--        | { 'invalid', message } (by ticket: out of range)
--        | { 'not_found' | 'not_held', 1 }: the hold had expired and was released now
local meta, err = load_meta()
if not meta then return err end
local now = now_ms()
local seq, h
if ARGV[1] == 'h' then
  seq = tonumber(ARGV[2])
  h = parse_hold(redis.call('HGET', K.holds, seq))
  if not h or not names_hold(h, ARGV[3], ARGV[5]) then return { 'not_found' } end
  if ARGV[4] ~= '' and h.user ~= ARGV[4] then return { 'forbidden' } end
else
  local reply
  seq, h, reply = hold_of_ticket(ARGV[2], meta)
  if not h then return reply end
end
local freed = free_hold(seq, h)
if h.deadline <= now then
  -- Already expired: tidied up, but to the caller it was gone.
  count_expired(1)
  return { ARGV[1] == 'h' and 'not_found' or 'not_held', 1 }
end
return { 'ok', freed }

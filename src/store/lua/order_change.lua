-- order_change: what happens to an order after its purchase: a payment
-- result, an operator's cancel, or its payment deadline. One order, decided
-- in one step against its current status, so that results arriving more
-- than once and in any order, the worker completing it, the deadline and a
-- cancel always end in one state with each ticket counted once (the table
-- in docs/api.md, "After the purchase").
-- KEYS[1..9]: the event's keys (see lib.lua)
-- ARGV: five per order (one or more orders of the event, each decided on
-- its own, in order): order seq, order secret,
--   'paid' | 'declined' (a payment result) | 'cancel' (operator)
--   | 'timeout' (the payment deadline passed),
--   payment reference, amount the result names (minor units)
-- Returns one answer per order (below), or the event's { 'not_found' } |
-- { 'schema', v } | { 'damaged', what } for the whole call.
-- Returns: { 'ok', changed (1|0), seq, status, orderSecret, createdMs, completedMs|'', 't1,..',
--            userId, amount, currency } (as purchase.lua answers)
--        | { 'not_found' } | { 'order_state', status } | { 'amount_mismatch', amount }
--        | { 'schema', v } | { 'damaged', what }
-- A change to cancelled, refunded or refund_due queues a job with its
-- `type`, which the purchase worker publishes to every sink like a
-- purchase.
local meta, err = load_meta()
if not meta then return err end
local answers = {}
for i = 1, #ARGV, 5 do
  answers[#answers + 1] = change_order(meta, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
end
return answers

-- order_change: what happens to an order after its purchase: a payment
-- result, an operator's cancel, or its payment deadline. One order, decided
-- in one step against its current status, so that results arriving more
-- than once and in any order, the worker completing it, the deadline and a
-- cancel always end in one state with each ticket counted once (the table
-- in docs/api.md, "After the purchase").
-- KEYS[1..9]: the event's keys (see lib.lua)
-- ARGV[1]: order seq   ARGV[2]: order secret
-- ARGV[3]: 'paid' | 'declined' (a payment result) | 'cancel' (operator)
--          | 'timeout' (the payment deadline passed)
-- ARGV[4]: payment reference   ARGV[5]: amount the result names (minor units)
-- Returns: { 'ok', changed (1|0), seq, status, orderSecret, createdMs, completedMs|'', 't1,..',
--            userId, amount, currency } (as purchase.lua answers)
--        | { 'not_found' } | { 'order_state', status } | { 'amount_mismatch', amount }
--        | { 'schema', v } | { 'damaged', what }
-- A change to cancelled, refunded or refund_due queues a job with its
-- `type`, which the purchase worker publishes to every sink like a
-- purchase.
local meta, err = load_meta()
if not meta then return err end
return change_order(meta, ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])

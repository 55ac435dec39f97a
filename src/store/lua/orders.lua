-- Orders prelude: added after lib.lua to the scripts that read or write
-- order records, act on a hold by one of its tickets, or call a command
-- with one answer per argument, so that the hold script does not carry it.

-- Like in_chunks, for a command answering one value per argument (HMGET,
-- ZMSCORE): returns its answers for the whole list, in order.
local function collect_in_chunks(list, f)
  local out = {}
  in_chunks(list, function(...)
    for _, v in ipairs(f(...)) do out[#out + 1] = v end
  end)
  return out
end

-- The currency of the event, for a script that did not load it.
local function currency_of_event()
  local sell = redis.call('HGET', K.meta, 'sell')
  return sell and string.sub(sell, 1, 3) or 'EUR'
end

-- An order record (see lib.lua): its status is `pending`, `completed`,
-- `failed`, `paid`, `refunded`, `refund_due`, or `cancelled:<reason>`.
local function parse_order(rec)
  if not rec then return nil end
  local status, osecret, hsecret, created, completed, tickets, amount, counted, user =
    string.match(rec, '^([%a_:]+)|([^|]*)|([^|]*)|(%d+)|(%d*)|([%d,]*):?(%d*):?(u?)|(.*)$')
  if not status then return nil end
  -- `status` as written ('cancelled:declined'), `state` without the reason.
  return { status = status, state = string.match(status, '^[%a_]+'), secret = osecret, hold_secret = hsecret, created = created,
           completed = completed, csv = tickets, user = user, amount_s = amount ~= '' and amount or '0',
           counted = counted == 'u' }
end

-- An order's record (as parse_order reads it) with this status and
-- completion time ('' for none).
local function order_record(o, status, completed)
  return table.concat({ status, o.secret, o.hold_secret, o.created, completed,
                        o.csv .. price_field(o.amount_s, o.counted), o.user }, '|')
end

-- The hold holding ticket ARGV-text `arg` (the compatibility routes act by
-- ticket): its seq and record, or nil, nil and the reply to give.
local function hold_of_ticket(arg, meta)
  if tonumber(arg) > meta.capacity then
    return nil, nil, { 'invalid', 'ticketId ' .. arg .. ' is out of range 1..' .. meta.capacity }
  end
  local owner = redis.call('HGET', K.owner, tonumber(arg))
  local h = owner and parse_hold(redis.call('HGET', K.holds, owner))
  if not h then return nil, nil, { 'not_held' } end
  return tonumber(owner), h
end


-- Queue prelude: prepended after lib.lua to the scripts that join, admit
-- and report an event's waiting room (queue_join, queue_tick,
-- release_expired). The hold and purchase scripts check and close places
-- inline and do not carry it.
--
-- Keys, all of the event's tag:
-- <tag>:q   hash  n (places issued), pre (places of the pre-queue, set when
--                 sales open), seed (24 hex digits: the shuffle of the
--                 pre-queue), opened (ms), cursor (places let in so far, in
--                 place order), total (admitted in all), soldout ('1'/'0'),
--                 key (32 hex digits: the MAC key of queue ids)
-- <tag>:qu  hash  userId -> join number (one place per user)
-- <tag>:qa  zset  join number -> admittedUntil (ms), while admitted and
--                 neither expired nor done (bought)
-- A place is its join number j; its place in line is j itself for those who
-- joined after sales opened, and perm(j) for the pre-queue (1..pre): a
-- keyed permutation (four Feistel rounds, cycle-walked onto 1..pre) that
-- `serve` computes the same way (src/model/queue.rs) to answer positions
-- without Redis. A queue id is '<event>.q<j>.<mac>', mac the first 32 hex
-- digits of sha1(key ':' event ':' j).

local M24 = 16777216

-- The four round keys of a seed (24 hex digits).
local function seed_keys(seed)
  local k = {}
  for i = 0, 3 do k[i + 1] = tonumber(string.sub(seed, i * 6 + 1, i * 6 + 6), 16) or 0 end
  return k
end

-- One round's function: below 2^h (h2 = 2^h). Every product stays below
-- 2^53, so doubles compute it exactly.
local function round_f(k, x, h2)
  local t = (x * 40503 + k) % M24
  return ((t * t) % 16777213) % h2
end

local function feistel(k, v, h2, inverse)
  local l, r = math.floor(v / h2), v % h2
  if inverse then
    for i = 4, 1, -1 do l, r = (r - round_f(k[i], l, h2)) % h2, l end
  else
    for i = 1, 4 do l, r = r, (l + round_f(k[i], r, h2)) % h2 end
  end
  return l * h2 + r
end

-- The permutation of 1..n (or its inverse): Feistel over the smallest
-- square power of two holding n, walked until it lands in range.
local function perm(x, n, seed, inverse)
  if n <= 1 then return x end
  local h2 = 2
  while h2 * h2 < n do h2 = h2 * 2 end
  local k = seed_keys(seed)
  local v = x - 1
  repeat v = feistel(k, v, h2, inverse) until v < n
  return v + 1
end

-- The queue's state (see above).
local function queue_state()
  local q = redis.call('HMGET', K.q, 'n', 'pre', 'seed', 'cursor', 'total', 'key', 'soldout', 'opened')
  return { n = tonumber(q[1]) or 0, pre = tonumber(q[2]), seed = q[3] or '', cursor = tonumber(q[4]) or 0,
           total = tonumber(q[5]) or 0, key = q[6] or '', soldout = q[7] == '1', opened = tonumber(q[8]) }
end

-- Line place of join number j, and join number of line place p.
local function place_of(st, j)
  if st.pre and j <= st.pre then return perm(j, st.pre, st.seed, false) end
  return j
end
local function join_at(st, p)
  if st.pre and p <= st.pre then return perm(p, st.pre, st.seed, true) end
  return p
end

-- Opens the line once sales are open: the places issued so far are the
-- pre-queue, shuffled with `seed` (a new random one from the caller).
local function queue_open(meta, st, now, seed)
  if st.pre or (meta.sales_start and now < meta.sales_start) then return end
  st.pre, st.seed, st.opened = st.n, seed, now
  redis.call('HSET', K.q, 'pre', st.n, 'seed', seed, 'opened', now)
end

-- Expires admissions past their time, then lets places in, in line order,
-- while fewer than maxActive are admitted and fewer than the tickets
-- available; notes whether the event is sold out (nothing available,
-- nothing held). The counts are read here: call after releasing expired
-- holds. O(places let in).
local function queue_admit(meta, st, now)
  redis.call('ZREMRANGEBYSCORE', K.qa, '-inf', now)
  local active = redis.call('ZCARD', K.qa)
  local c = redis.call('HMGET', K.meta, 'held', 'sold')
  local held, sold = tonumber(c[1]) or 0, tonumber(c[2]) or 0
  local available = meta.capacity - held - sold
  local soldout = available <= 0 and held <= 0
  local admitted = 0
  if st.pre then
    local room = math.min(meta.queue_max, available) - active
    local adds = {}
    local until_s = fmt_int(now + meta.queue_ms)
    while room > 0 and st.cursor < st.n do
      st.cursor, room = st.cursor + 1, room - 1
      adds[#adds + 1] = until_s
      adds[#adds + 1] = fmt_int(join_at(st, st.cursor))
    end
    admitted = #adds / 2
    if admitted > 0 then
      in_chunks(adds, function(...) redis.call('ZADD', K.qa, ...) end)
      st.total = st.total + admitted
      redis.call('HSET', K.q, 'cursor', st.cursor, 'total', st.total)
    end
  end
  if soldout ~= st.soldout then redis.call('HSET', K.q, 'soldout', soldout and '1' or '0') end
  st.soldout, st.active, st.available = soldout, active + admitted, available
  return admitted
end

-- When the queue next needs a pass: sales opening, the first admission to
-- expire, or in a second while places wait (a purchase frees a slot
-- without admitting). -1: never.
local function queue_next(meta, st, now)
  if not meta.queue_max then return -1 end
  if not st.pre then return meta.sales_start or -1 end
  local nxt = -1
  local first = redis.call('ZRANGE', K.qa, 0, 0, 'WITHSCORES')
  if first[2] then nxt = tonumber(first[2]) end
  if st.cursor < st.n and (nxt < 0 or now + 1000 < nxt) then nxt = now + 1000 end
  return nxt
end

-- The whole state as a reply: { n, pre|-1, seed, cursor, total, soldout (0|1), key,
-- maxActive, admissionMs, salesStart|-1, nowMs, available, active, then j, until per
-- admitted place (at most `max_list` of them, soonest to expire first) }.
local function queue_reply(meta, st, now, max_list)
  local reply = { st.n, st.pre or -1, st.seed, st.cursor, st.total, st.soldout and 1 or 0, st.key,
                  meta.queue_max, meta.queue_ms, meta.sales_start or -1, now, st.available or -1,
                  st.active or 0 }
  if max_list > 0 then
    local list = redis.call('ZRANGE', K.qa, 0, max_list - 1, 'WITHSCORES')
    for i = 1, #list do reply[#reply + 1] = list[i] end
  end
  return reply
end

-- wrk: the proof of concept's flow on the compat event: reserve a random
-- ticket, and buy every ticket won before reserving the next. Counts buys.
local capacity = tonumber(os.getenv("BENCH_CAPACITY") or "1000000")
local headers = { ["Content-Type"] = "application/json" }
local n = 0
local id = tostring({}):sub(8)
local pending = nil   -- ticket won and not bought yet
local last = nil      -- ticket of the reserve in flight
local buys = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + tonumber(id, 16) % 100000)
end

function request()
  if pending then
    local t = pending
    pending = nil
    last = nil
    return wrk.format("POST", "/api/ticket/buy", headers,
      '{"ticketId":' .. t .. ',"userId":"b' .. id .. '-' .. t .. '"}')
  end
  n = n + 1
  last = math.random(1, capacity)
  return wrk.format("POST", "/api/ticket/reserve", headers,
    '{"userId":"b' .. id .. '-' .. last .. '","ticketId":' .. last .. '}')
end

function response(status, headers, body)
  if last and status == 200 then
    pending = last
  elseif not last and status == 200 then
    buys = buys + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + (t:get("buys") or 0) end
  io.write(string.format("BUYS %d\n", total))
end

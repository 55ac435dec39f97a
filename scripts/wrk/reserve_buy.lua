-- wrk: the proof of concept's flow on the compat event: reserve a random
-- ticket; every ticket won is bought by the same user with the next request
-- this thread sends. Prints the number of purchases as "BUYS n".
local capacity = tonumber(os.getenv("BENCH_CAPACITY") or "1000000")
local headers = { ["Content-Type"] = "application/json" }
local id = tostring({}):sub(8)
local won = {}        -- tickets reserved and not bought yet (any connection)
buys = 0              -- global so that done() can read it per thread
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + tonumber(id, 16) % 100000)
end

function request()
  local t = table.remove(won)
  if t then
    return wrk.format("POST", "/api/ticket/buy", headers,
      '{"ticketId":' .. t .. ',"userId":"b' .. id .. '-' .. t .. '"}')
  end
  t = math.random(1, capacity)
  return wrk.format("POST", "/api/ticket/reserve", headers,
    '{"userId":"b' .. id .. '-' .. t .. '","ticketId":' .. t .. '}')
end

function response(status, headers, body)
  if status ~= 200 then return end
  if body:find('"orderId"', 1, true) then
    buys = buys + 1
  else
    local t = body:match('"ticketId":(%d+)')
    if t then table.insert(won, t) end
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + (t:get("buys") or 0) end
  io.write(string.format("BUYS %d\n", total))
end

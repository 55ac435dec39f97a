-- wrk: the proof of concept's reserve route on random tickets of the compat
-- event (capacity env BENCH_CAPACITY), each from a new user.
local capacity = tonumber(os.getenv("BENCH_CAPACITY") or "1000000")
local headers = { ["Content-Type"] = "application/json" }
local n = 0
local id = tostring({}):sub(8)

function init(args)
  math.randomseed(os.time() + tonumber(id, 16) % 100000)
end

function request()
  n = n + 1
  local body = '{"userId":"r' .. id .. '-' .. n .. '","ticketId":' .. math.random(1, capacity) .. '}'
  return wrk.format("POST", "/api/ticket/reserve", headers, body)
end

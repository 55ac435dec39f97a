-- wrk: one-ticket holds on random tickets of the event named by env BENCH_EVENT
-- (capacity env BENCH_CAPACITY), each from a new user.
local event = os.getenv("BENCH_EVENT") or "bench"
local capacity = tonumber(os.getenv("BENCH_CAPACITY") or "1000000")
local path = "/v1/events/" .. event .. "/holds"
local headers = { ["Content-Type"] = "application/json" }
local n = 0
local id = tostring({}):sub(8)

function init(args)
  math.randomseed(os.time() + tonumber(id, 16) % 100000)
end

function request()
  n = n + 1
  local body = '{"userId":"w' .. id .. '-' .. n .. '","ticketIds":[' .. math.random(1, capacity) .. ']}'
  return wrk.format("POST", path, headers, body)
end

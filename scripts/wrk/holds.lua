-- wrk: one-ticket holds on random tickets of the event named by env BENCH_EVENT
-- (capacity env BENCH_CAPACITY), each from a new user.
-- BENCH_EVENTS (comma-separated) spreads the holds over several events.
local capacity = tonumber(os.getenv("BENCH_CAPACITY") or "1000000")
local paths = {}
for e in string.gmatch(os.getenv("BENCH_EVENTS") or os.getenv("BENCH_EVENT") or "bench", "[^,]+") do
  paths[#paths + 1] = "/v1/events/" .. e .. "/holds"
end
local headers = { ["Content-Type"] = "application/json" }
local n = 0
local id = tostring({}):sub(8)

function init(args)
  math.randomseed(os.time() + tonumber(id, 16) % 100000)
end

function request()
  n = n + 1
  local body = '{"userId":"w' .. id .. '-' .. n .. '","ticketIds":[' .. math.random(1, capacity) .. ']}'
  return wrk.format("POST", paths[math.random(1, #paths)], headers, body)
end

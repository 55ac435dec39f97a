-- wrk: one-ticket holds on random tickets of the event named by env BENCH_EVENT
-- (capacity env BENCH_CAPACITY), each from a new user.
-- BENCH_EVENTS (comma-separated) spreads the holds over several events.
-- BENCH_TOKENS names a file of bearer tokens (scripts/jwtokens.py), one per
-- line: each request goes as the next token's buyer, in turn, with no
-- userId in its body.
local capacity = tonumber(os.getenv("BENCH_CAPACITY") or "1000000")
local paths = {}
for e in string.gmatch(os.getenv("BENCH_EVENTS") or os.getenv("BENCH_EVENT") or "bench", "[^,]+") do
  paths[#paths + 1] = "/v1/events/" .. e .. "/holds"
end
local headers = { ["Content-Type"] = "application/json" }
local n = 0
local id = tostring({}):sub(8)
local tokens = {}
if (os.getenv("BENCH_TOKENS") or "") ~= "" then
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    tokens[#tokens + 1] = "Bearer " .. line
  end
end

function init(args)
  math.randomseed(os.time() + tonumber(id, 16) % 100000)
end

function request()
  n = n + 1
  if #tokens > 0 then
    headers["Authorization"] = tokens[(n - 1) % #tokens + 1]
    local body = '{"ticketIds":[' .. math.random(1, capacity) .. ']}'
    return wrk.format("POST", paths[math.random(1, #paths)], headers, body)
  end
  local body = '{"userId":"w' .. id .. '-' .. n .. '","ticketIds":[' .. math.random(1, capacity) .. ']}'
  return wrk.format("POST", paths[math.random(1, #paths)], headers, body)
end

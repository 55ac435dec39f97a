-- wrk: polls of waiting-room places, GET /v1/queue/{queueId}, taking the
-- ids of the file named by env BENCH_QUEUE_IDS (scripts/queueplaces.py) in turn.
local ids = {}
for line in io.lines(os.getenv("BENCH_QUEUE_IDS")) do
  ids[#ids + 1] = "/v1/queue/" .. line
end
local n = 0

function request()
  n = n + 1
  return wrk.format("GET", ids[(n - 1) % #ids + 1])
end

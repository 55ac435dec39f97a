-- wrk: signed payment results (POST /v1/orders/{id}/payment), cycling over
-- the requests written by scripts/paymentreqs.py to the file named by env
-- BENCH_PAYMENTS: one "path<TAB>signature<TAB>body" line each. A result sent
-- again is answered 200 with no change, as a payment service's retry is.
local reqs = {}
for line in io.lines(os.getenv("BENCH_PAYMENTS")) do
  local path, sig, body = line:match("^([^\t]+)\t([^\t]+)\t(.*)$")
  reqs[#reqs + 1] = wrk.format("POST", path,
    { ["Content-Type"] = "application/json", ["X-Ticketctl-Signature"] = sig }, body)
end
local i = math.random(#reqs)

function request()
  i = i % #reqs + 1
  return reqs[i]
end

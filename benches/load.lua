-- The wrk script of benches/load.sh.
-- LOAD_WORKLOAD=get (default) sends GET /hello; LOAD_WORKLOAD=post sends
-- POST /settings/{id} with a changing value, so each sensitive event records a change.
-- LOAD_WORKLOAD=get-paced sends GET /hello too, but each connection waits LOAD_PACE_MS
-- (default 1) milliseconds after each answer before its next request: a steady load that
-- leaves the server idle part of the time, so that latency is the request's own. At
-- saturation (the other workloads) every connection always has a request waiting, and
-- latency is mostly the queue's: connections / throughput, whatever a request costs.
-- done() prints one machine-readable RESULT line for the driver to parse.

local workload = os.getenv("LOAD_WORKLOAD") or "get"
local counter = 0

if workload == "post" then
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  request = function()
    counter = counter + 1
    return wrk.format(nil, "/settings/" .. (counter % 16), nil, '{"value":' .. counter .. '}')
  end
end

if workload == "get-paced" then
  local pace = tonumber(os.getenv("LOAD_PACE_MS") or "1")
  assert(pace and pace >= 0 and pace == math.floor(pace),
    "LOAD_PACE_MS must be a whole number of milliseconds, not " .. tostring(os.getenv("LOAD_PACE_MS")))
  delay = function()
    return pace
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d socket_errors=%d non2xx=%d\n",
    summary.requests, summary.duration,
    math.floor(latency:percentile(50)), math.floor(latency:percentile(99)),
    e.connect + e.read + e.write + e.timeout, e.status))
end

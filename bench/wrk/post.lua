-- wrk script for the JSON publish paths (bench/wrk.mjs runs it): every request is a POST of the
-- body in the file named by WRK_BODY with the headers in WRK_HEADERS ("name: value" per line).
-- wrk sends one fixed request (no Lua per request), so wrk's own cost is the same for every
-- target; done() prints one JSON line that bench/wrk.mjs parses.
wrk.method = "POST"
local f = assert(io.open(assert(os.getenv("WRK_BODY"), "WRK_BODY not set"), "rb"))
wrk.body = f:read("*a")
f:close()
for line in (os.getenv("WRK_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end

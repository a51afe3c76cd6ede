-- wrk script for the benchmark: sends the raw request bytes from the file in
-- BENCH_REQUEST_FILE unchanged, so wrk and constant_rate_load send the same
-- bytes, and prints the summary as one JSON line that bench.py reads.
local path = os.getenv("BENCH_REQUEST_FILE")
local file = assert(io.open(path, "rb"), "cannot read BENCH_REQUEST_FILE " .. tostring(path))
local raw = file:read("*a")
file:close()

request = function()
  return raw
end

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,' ..
    '"errors_timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end

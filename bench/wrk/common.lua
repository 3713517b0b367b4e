-- Shared by every workload script (bench.http_ratios runs wrk with one of them):
--   * `data`: the run's values (tokens, ids, bodies), a Lua file bench.http_ratios writes and names in
--     BENCH_WRK_DATA;
--   * each thread's number (setup) and its response counts by status (`response = count_status`);
--   * done(): one line `BENCH_RESULT {json}` with throughput, latency percentiles, errors, status counts
--     and any per-thread tallies (the hot slot's rounds), which bench.http_ratios parses.

data = dofile(os.getenv("BENCH_WRK_DATA"))

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("thread_no", #threads)
end

-- Per thread (each wrk thread has its own Lua state): called by scripts from init().
function start_thread()
   statuses = {}
   tallies = {}
   math.randomseed(thread_no * 7919 + os.time())
end

function count_status(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   if status >= 400 then  -- the problem's code (RFC 9457 body), e.g. 409 staff_busy
      local code = body and string.match(body, '"code"%s*:%s*"([%w_%.%-]+)"') or "?"
      local key = status .. " " .. code
      tallies[key] = (tallies[key] or 0) + 1
   end
end

function json_headers()
   local h = {["Content-Type"] = "application/json"}
   if data.token then h["Authorization"] = "Bearer " .. data.token end
   return h
end

local function json_object(t)
   local parts = {}
   for k, v in pairs(t) do
      local value
      if type(v) == "table" then value = json_object(v)
      elseif type(v) == "number" then value = string.format("%.17g", v)
      else value = '"' .. tostring(v) .. '"' end
      table.insert(parts, '"' .. tostring(k) .. '":' .. value)
   end
   return "{" .. table.concat(parts, ",") .. "}"
end

local function merge(into, from)
   for k, v in pairs(from or {}) do into[k] = (into[k] or 0) + v end
end

function done(summary, latency, requests)
   local all_statuses, all_tallies = {}, {}
   for _, thread in ipairs(threads) do
      merge(all_statuses, thread:get("statuses"))
      merge(all_tallies, thread:get("tallies"))
   end
   local errors = summary.errors
   io.write("BENCH_RESULT " .. json_object({
      requests = summary.requests,
      duration_us = summary.duration,
      bytes = summary.bytes,
      errors = {connect = errors.connect, read = errors.read, write = errors.write, status = errors.status,
                timeout = errors.timeout},
      latency_us = {mean = latency.mean, max = latency.max, p50 = latency:percentile(50),
                    p90 = latency:percentile(90), p99 = latency:percentile(99)},
      statuses = all_statuses,
      tallies = all_tallies,
   }) .. "\n")
end

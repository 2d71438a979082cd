-- wrk script for bench/bench.py: every request body is unique.
--   wrk ... -s bench/unique.lua URL -- <mode> <datadir> <run id> <threads>
-- mode "json":    {"email", "name", "subject", "message"} with a per-thread counter and randomness;
--                 X-Bridge-Token read from <datadir>/json_token.
-- mode "mailgun": a multipart/form-data Mailgun forward() post: static fields and attachments from
--                 <datadir>/prefix.bin and suffix.bin, and per request a new Message-Id and the next
--                 signed (timestamp, token, signature) of <datadir>/tokens.txt (signed in Python,
--                 since a token may only be used once). When the pool runs out it starts again
--                 (counted as "wraps": those requests are duplicates).
-- done() prints one line "BENCH_JSON {...}" with the counts and latency percentiles.

local threads = {}
local next_id = 1

function setup(thread)
  thread:set("id", next_id)
  table.insert(threads, thread)
  next_id = next_id + 1
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

local function part(boundary, name, value)
  return "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"" .. name .. "\"\r\n\r\n" .. value .. "\r\n"
end

function init(args)
  mode, datadir, run_id, nthreads = args[1], args[2], args[3], tonumber(args[4])
  n, wraps = 0, 0
  math.randomseed(os.time() * 1000 + id)
  if mode == "json" then
    token = slurp(datadir .. "/json_token"):gsub("%s+$", "")
    headers = { ["Content-Type"] = "application/json", ["X-Bridge-Token"] = token }
  else
    boundary = slurp(datadir .. "/boundary"):gsub("%s+$", "")
    prefix = slurp(datadir .. "/prefix.bin")
    suffix = slurp(datadir .. "/suffix.bin")
    signed = {}
    local i = 0
    for line in io.lines(datadir .. "/tokens.txt") do
      -- this thread's share: lines id, id + nthreads, ...
      if i % nthreads == id - 1 then
        table.insert(signed, line)
      end
      i = i + 1
    end
    headers = { ["Content-Type"] = "multipart/form-data; boundary=" .. boundary }
  end
end

function request()
  n = n + 1
  local tag = run_id .. "-" .. id .. "-" .. n
  if mode == "json" then
    local body = '{"email":"bench' .. id .. "-" .. n .. '@example.com","name":"Bench User","subject":"Bench '
      .. tag .. '","message":"Load test message ' .. tag .. " " .. string.format("%08x%08x", math.random(0, 0x7fffffff),
      math.random(0, 0x7fffffff)) .. '"}'
    return wrk.format("POST", nil, headers, body)
  end
  local k = ((n - 1) % #signed) + 1
  if k == 1 and n > 1 then
    wraps = wraps + 1
  end
  local stamp, token, signature = signed[k]:match("(%S+) (%S+) (%S+)")
  -- the Message-Id goes with the token: after a wrap the same pair comes again, a plain duplicate
  local message_id = "<bench-" .. run_id .. "-" .. id .. "-" .. k .. "@bench.example>"
  local body = prefix .. part(boundary, "timestamp", stamp) .. part(boundary, "token", token)
    .. part(boundary, "signature", signature) .. part(boundary, "Message-Id", message_id) .. suffix
  return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
  local total_wraps = 0
  for _, thread in ipairs(threads) do
    total_wraps = total_wraps + (thread:get("wraps") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_s": %.3f, "non_2xx_3xx": %d, "connect_errors": %d, '
      .. '"read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_ms": %.3f, "p99_ms": %.3f, '
      .. '"mean_ms": %.3f, "max_ms": %.3f, "bytes": %d, "pool_wraps": %d}\n',
    summary.requests, summary.duration / 1e6, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.mean / 1000, latency.max / 1000,
    summary.bytes, total_wraps))
end

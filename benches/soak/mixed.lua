-- Mixed load for benches/soak/run.sh: inserts (vectors, some texts), deletes
-- of this thread's acknowledged inserts, searches by vector and by text,
-- and /v1/embeddings, on the collection `soak` (dimension 64: the tiny
-- fixture model).
--
-- Deletes only take ids whose insert was answered 201 (the id is read from
-- the answer) and each id until it is answered 200 (a delete refused with
-- 503 is sent again), so a delete never meets a missing document: any 404
-- is a failure. The number of documents a thread keeps is bounded
-- (SOAK_LIVE per thread, default 1000), so the database does not grow
-- during the run and memory can stay flat.
--
-- Counts every answer by status (503 split by its error code) and socket
-- errors; done() prints them with requests/s and p50/p99 latency and writes
-- them as `key value` lines to $SOAK_COUNTS for run.sh to check.

local counter = 0
local threads = {}

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

local DIM = 64
local live_target = tonumber(os.getenv("SOAK_LIVE") or "1000")
local next_id = 0
-- This thread's acknowledged, not yet deleted inserts (a FIFO).
local acked = {}
local head, tail = 1, 0
counts = {}
sample = ""

function init(args)
  math.randomseed(tid * 7919 + os.time())
end

local json = { ["Content-Type"] = "application/json" }

local function vec()
  local t = {}
  for i = 1, DIM do
    t[i] = string.format("%.5f", math.random() * 2 - 1)
  end
  return "[" .. table.concat(t, ",") .. "]"
end

local words = { "apple", "river", "engine", "quarterly", "invoice", "sunset", "cat",
  "mountain", "error", "upgrade", "garden", "violin", "harbour", "ledger", "comet" }

local function phrase(n)
  local t = {}
  for i = 1, n do
    t[i] = words[math.random(#words)]
  end
  return table.concat(t, " ") .. " " .. math.random(100000)
end

local function insert(text)
  next_id = next_id + 1
  local id = "w" .. tid .. "-" .. next_id
  local body
  if text then
    body = '{"id":"' .. id .. '","text":"' .. phrase(6) .. '","metadata":{"t":' .. tid .. '}}'
  else
    body = '{"id":"' .. id .. '","vector":' .. vec() .. ',"metadata":{"t":' .. tid .. ',"n":' .. next_id .. '}}'
  end
  return wrk.format("POST", "/collections/soak/documents", json, body)
end

-- Deletes sent and not yet answered 200, id -> os.time() when sent. A delete
-- refused with 503 (the answer does not say which request it answers) is
-- sent again once its answer is surely in; without that, every refused
-- delete left a document behind and the database grew during the run.
local inflight = {}
local inflight_n = 0
local RESEND_AFTER_S = 10

local function delete_id(id)
  if inflight[id] == nil then
    inflight_n = inflight_n + 1
  end
  inflight[id] = os.time()
  return wrk.format("DELETE", "/collections/soak/documents/" .. id)
end

local function vector_search()
  return wrk.format("POST", "/collections/soak/search", json,
    '{"vector":' .. vec() .. ',"k":10}')
end

local function delete()
  local now = os.time()
  for id, sent in pairs(inflight) do
    if now - sent > RESEND_AFTER_S then
      return delete_id(id)
    end
  end
  local id = acked[head]
  if id == nil then
    -- Every document of this thread has a delete in flight.
    return vector_search()
  end
  acked[head] = nil
  head = head + 1
  return delete_id(id)
end

function request()
  -- Documents still in the database: acknowledged and not yet deleted,
  -- including those whose delete is in flight (or was refused and waits
  -- to be sent again): without them, refused deletes let it grow.
  local live = tail - head + 1 + inflight_n
  local r = math.random(100)
  if r <= 20 then
    if live > live_target then return delete() end
    return insert(false)
  elseif r <= 23 then
    if live > live_target then return delete() end
    return insert(true)
  elseif r <= 43 then
    if live == 0 then return insert(false) end
    return delete()
  elseif r <= 70 then
    return vector_search()
  elseif r <= 82 then
    return wrk.format("POST", "/collections/soak/search", json,
      '{"text":"' .. phrase(3) .. '","k":10}')
  else
    return wrk.format("POST", "/v1/embeddings", json,
      '{"model":"soak","input":"' .. phrase(8) .. '"}')
  end
end

function response(status, headers, body)
  local key = tostring(status)
  if status == 201 then
    local id = body:match('"id"%s*:%s*"([^"]+)"')
    if id then
      tail = tail + 1
      acked[tail] = id
    end
  elseif status == 200 then
    local id = body:match('"deleted"%s*:%s*"([^"]+)"')
    if id and inflight[id] ~= nil then
      inflight[id] = nil
      inflight_n = inflight_n - 1
    end
  elseif status >= 300 then
    local code = body:match('"code"%s*:%s*"([^"]+)"') or "?"
    key = key .. " " .. code
    if key ~= "503 overloaded" and #sample < 2000 then
      sample = sample .. key .. ": " .. body:sub(1, 300) .. "\n"
    end
  end
  counts[key] = (counts[key] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  local samples = ""
  for _, thread in ipairs(threads) do
    for k, v in pairs(thread:get("counts")) do
      total[k] = (total[k] or 0) + v
    end
    samples = samples .. thread:get("sample")
  end
  local e = summary.errors
  local seconds = summary.duration / 1e6
  local lines = {
    string.format("requests %d", summary.requests),
    string.format("seconds %.1f", seconds),
    string.format("requests_per_s %.1f", summary.requests / seconds),
    string.format("p50_ms %.2f", latency:percentile(50) / 1000),
    string.format("p90_ms %.2f", latency:percentile(90) / 1000),
    string.format("p99_ms %.2f", latency:percentile(99) / 1000),
    string.format("max_ms %.2f", latency.max / 1000),
    string.format("socket_errors %d", e.connect + e.read + e.write + e.timeout),
    string.format("socket_errors_detail connect=%d,read=%d,write=%d,timeout=%d",
      e.connect, e.read, e.write, e.timeout),
  }
  local keys = {}
  for k in pairs(total) do table.insert(keys, k) end
  table.sort(keys)
  for _, k in ipairs(keys) do
    table.insert(lines, string.format("status %s %d", (k:gsub(" ", "_")), total[k]))
  end
  local text = table.concat(lines, "\n") .. "\n"
  io.write(text)
  if samples ~= "" then
    io.write("first unexpected answers:\n" .. samples)
  end
  local path = os.getenv("SOAK_COUNTS")
  if path then
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
  end
end

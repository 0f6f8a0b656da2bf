-- trace_ingest(id, project, now_ms, metas, data_1 .. data_n)
-- metas: per event, fields joined by \31 and events ended by \30 (keys and models hold no control characters):
--   seq (0 = next), key ("" = none), tokens_in, tokens_out, cost_usd, model, priced (0/1), usage (0/1: also a
--   usage record), ending, starts (0/1: an ended trace runs again); ending is "" or
--   "<status>:<duration ms>:<tokens in>:<tokens out>" (each number may be empty: the duration is then measured,
--   the totals left to the llm_call events). data_i is the event's stored JSON.
-- (One argument for the small fields, and one string back: redis-py packs and parses in Python, and that is
-- the API's bottleneck at high ingest rates.)
-- Appends the events in the order given (the caller sorts them). Per event the answer is "ok:<seq>",
-- "dup:<seq>" (its idempotency key is stored already), "conflict:<seq>" (another event holds that seq) or
-- "stale:<last>" (the seq is at or below the last stored one and free). -> {"missing"} | {"ok", "answer,answer,..."}
local SCAN_GUARD_MS = 60000  -- milliseconds a live-scan chain's guard lasts unless the chain renews it
local id, project, now = ARGV[1], ARGV[2], ARGV[3]
local metas = {}
for record in string.gmatch(ARGV[4], "([^\30]*)\30") do
  local f = {}
  for piece in string.gmatch(record .. "\31", "([^\31]*)\31") do f[#f + 1] = piece end
  metas[#metas + 1] = {tonumber(f[1]), f[2], tonumber(f[3]), tonumber(f[4]), tonumber(f[5]), f[6], f[7], f[8],
    f[9], f[10]}
end
local tkey = k_trace(id)
local head = redis.call("hmget", tkey, "project", "last_seq", "status", "agent", "worker", "seq")
if head[1] ~= project then return {"missing"} end
local last = tonumber(head[2]) or 0
local status, agent, worker, list_seq = head[3], head[4] or "", head[5] or "", head[6]
local ekey, kkey = k_trace_events(id), k_trace_keys(id)
local answers = {}
local added, tin, tout, cost = 0, 0, 0, 0
local new_status, duration, total_in, total_out = nil, nil, nil, nil
for i, m in ipairs(metas) do
  local seqarg, key, data = m[1], m[2], ARGV[4 + i]
  local answer = nil
  if key ~= "" then
    local prev = redis.call("hget", kkey, key)
    if prev then answer = "dup:" .. prev end
  end
  local seq = nil
  if not answer then
    if seqarg == 0 then
      seq = last + 1
    else
      seq = seqarg
      if seq <= last then
        local sid = string.format("%d", seq)
        if #redis.call("xrange", ekey, sid .. "-0", sid .. "-0") > 0 then
          answer = "conflict:" .. sid
        else
          answer = "stale:" .. string.format("%d", last)
        end
      end
    end
  end
  if not answer then
    local sid = string.format("%d", seq)
    redis.call("xadd", ekey, sid .. "-0", "d", data)
    if key ~= "" then redis.call("hset", kkey, key, sid) end
    last = seq
    added = added + 1
    local ein, eout, ecost = m[3], m[4], m[5]
    tin, tout, cost = tin + ein, tout + eout, cost + ecost
    if m[8] == "1" then
      redis.call("xadd", k_usage(project), "*", "agent", agent, "model", m[6], "worker", worker,
        "trace_id", id, "tokens_in", string.format("%d", ein), "tokens_out", string.format("%d", eout),
        "cost_usd", string.format("%.12g", ecost), "priced", m[7], "at", now)
    end
    local ending, flags = m[9], m[10]
    if ending ~= "" then
      local parts = {}
      for piece in string.gmatch(ending .. ":", "([^:]*):") do parts[#parts + 1] = piece end
      new_status = parts[1]
      duration = parts[2] ~= "" and parts[2] or nil
      total_in = parts[3] ~= "" and tonumber(parts[3]) or nil
      total_out = parts[4] ~= "" and tonumber(parts[4]) or nil
    elseif flags == "1" then
      new_status, duration = "running", nil
    end
    answer = "ok:" .. sid
  end
  answers[#answers + 1] = answer
end
if added > 0 then
  redis.call("hset", tkey, "last_seq", string.format("%d", last), "updated_at", now)
  redis.call("hincrby", tkey, "events", added)
  if tin > 0 then redis.call("hincrby", tkey, "tokens_in", tin) end
  if tout > 0 then redis.call("hincrby", tkey, "tokens_out", tout) end
  if cost > 0 then redis.call("hincrbyfloat", tkey, "cost_usd", string.format("%.10f", cost)) end
  -- A run that reports its own token totals: the trace shows at least those.
  for field, total in pairs({tokens_in = total_in, tokens_out = total_out}) do
    if total and total > tonumber(redis.call("hget", tkey, field) or "0") then
      redis.call("hset", tkey, field, string.format("%d", total))
    end
  end
  if new_status then
    if new_status == "running" then
      redis.call("hdel", tkey, "ended_at", "duration_ms")
    else
      if not duration then
        duration = string.format("%d", tonumber(now) - tonumber(redis.call("hget", tkey, "created_at")))
      end
      redis.call("hset", tkey, "ended_at", now, "duration_ms", duration)
    end
    if new_status ~= status then
      trace_unindex(project, id, agent, status)
      trace_index(project, id, agent, new_status, list_seq)
      redis.call("hset", tkey, "status", new_status)
    end
  end
  -- Detectors: a run that ended is analysed (an engine job); a running one is scanned for loops and budgets by
  -- a chain of scan_trace jobs (one every 5 s while events keep coming; see scan_next.lua), so a runaway agent
  -- is flagged while it runs. This batch marks the trace dirty and starts a chain unless one is alive.
  local current = new_status or status
  if new_status and current ~= "running" and status == "running" then  -- it just ended (not a repeated end)
    enqueue_job("analyze_trace", {id}, now)
  elseif current == "running" then
    redis.call("set", k_trace_scan_dirty(id), "1", "PX", SCAN_GUARD_MS)
    if redis.call("set", k_trace_scan(id), "1", "NX", "PX", SCAN_GUARD_MS) then
      enqueue_job("scan_trace", {id}, now)
    end
  end
end
return {"ok", table.concat(answers, ",")}

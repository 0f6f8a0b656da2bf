-- incident_record(project, trace_id, task_id, worker, cost_usd, now_ms, max_workers, max_history, max_members,
--                 then per detection: digest, fresh_id, class, signature, summary, detector_version,
--                 evidence_json, critical_step_seq ("" = none), confidence)
-- Counts one trace's detections into incidents, one per (project, class, signature): the signature key
-- ty:p:<project>:incsig:<digest> names the incident. Per detection, in order, "<outcome>:<incident id>":
--   created    first occurrence: the key was unset; the incident is made with the caller's fresh id
--   regressed  the incident was resolved and the signature came back: it is now `regressed`
--   updated    another trace counted into the incident
--   duplicate  this trace was counted already (only its cost may have grown: the larger figure is kept)
-- One call decides the first occurrence, so callers racing on a signature never both see "created".
-- An incident names its newest `max_members` traces (with their cost) and tasks; older ones are dropped from the
-- sets (so a trace dropped long ago and analysed again counts again), while `trace_count` / `task_count` in the
-- hash count every one: an incident that recurs forever stays a bounded set of keys.
-- -> "outcome:id,outcome:id,..."
local project, trace, task, worker, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[6])
local cost = tonumber(ARGV[5])
local max_workers, max_history, max_members = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local STRIDE = 9  -- ARGV entries per detection
local FIRST = 10  -- ARGV index of the first detection

-- Counts a member just added to the incident's `set` into the hash's `field` (an incident recorded before the
-- counters existed starts them at its set's size), dropping the set's oldest member past the cap: returned, so
-- its cost can go too.
local function counted(id, set, field)
  local size = redis.call("zcard", set)
  if redis.call("hsetnx", k_incident(id), field, size) == 0 then
    redis.call("hincrby", k_incident(id), field, 1)
  end
  if size > max_members then
    return redis.call("zpopmin", set)[1]
  end
  return nil
end

-- A trace new to the incident: counted, and the oldest past the cap forgotten with its cost.
local function trace_added(id)
  local dropped = counted(id, k_incident_traces(id), "trace_count")
  if dropped then
    redis.call("hdel", k_incident_costs(id), dropped)
  end
end

-- Counts the trace's cost once, at its largest recorded figure (a running trace is scanned as it grows).
local function add_cost(id)
  local costs = k_incident_costs(id)
  local old = tonumber(redis.call("hget", costs, trace) or "0")
  if cost > old then
    redis.call("hset", costs, trace, ARGV[5])
    redis.call("hincrbyfloat", k_incident(id), "cost_wasted_usd", string.format("%.17g", cost - old))
  end
end

-- Remembers the task and the worker of this occurrence (at most max_workers workers per incident).
local function add_task_and_worker(id)
  if task ~= "" and redis.call("zadd", k_incident_tasks(id), "NX", now, task) == 1 then
    counted(id, k_incident_tasks(id), "task_count")
  end
  if worker ~= "" then
    local workers = k_incident_workers(id)
    if redis.call("zscore", workers, worker) or redis.call("zcard", workers) < max_workers then
      redis.call("zadd", workers, now, worker)
    end
  end
end

local answers = {}
for i = FIRST, #ARGV, STRIDE do
  local digest, fresh, cls, signature = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local sigkey = k_incident_sig(project, digest)
  local id = redis.call("get", sigkey)
  local f = id and redis.call("hmget", k_incident(id), "status", "failure_class") or {}
  local outcome
  if not f[1] then
    -- First occurrence (or a signature whose incident is gone): this call's fresh id becomes the incident.
    id = fresh
    redis.call("set", sigkey, id)
    local seq = redis.call("incr", k_incident_seq())
    redis.call("hset", k_incident(id), "id", id, "project", project, "failure_class", cls, "signature", signature,
      "digest", digest, "status", "open", "owner", "", "summary", ARGV[i + 4], "detector_version", ARGV[i + 5],
      "evidence", ARGV[i + 6], "critical_step_seq", ARGV[i + 7], "confidence", ARGV[i + 8], "trace_id", trace,
      "task_id", task, "worker", worker, "first_seen", now, "last_seen", now, "updated_at", now, "count", 1,
      "regressions", 0, "cost_wasted_usd", 0, "seq", seq)
    redis.call("zadd", k_incident_traces(id), now, trace)
    trace_added(id)
    add_cost(id)
    add_task_and_worker(id)
    incident_log(id, {at = now, by = "taskyard", field = "status", from = cjson.null, to = "open",
      trace_id = trace}, max_history)
    incident_index(project, id, "open", cls, seq)
    outcome = "created"
  elseif redis.call("zadd", k_incident_traces(id), "NX", now, trace) == 0 then
    add_cost(id)
    outcome = "duplicate"
  else
    local ikey = k_incident(id)
    local status = f[1]
    trace_added(id)
    add_cost(id)
    add_task_and_worker(id)
    local seq = redis.call("incr", k_incident_seq())
    redis.call("hincrby", ikey, "count", 1)
    redis.call("hset", ikey, "last_seen", now, "seq", seq)
    outcome = "updated"
    if status == "resolved" then
      redis.call("zrem", k_inc_status(project, status), id)
      status = "regressed"
      redis.call("hset", ikey, "status", status, "updated_at", now)
      redis.call("hdel", ikey, "resolved_at")
      redis.call("hincrby", ikey, "regressions", 1)
      incident_log(id, {at = now, by = "taskyard", field = "status", from = "resolved", to = status,
        trace_id = trace}, max_history)
      outcome = "regressed"
    end
    incident_index(project, id, status, f[2], seq)
  end
  if outcome ~= "duplicate" then
    activity(project, "incident", id, outcome, cls)
  end
  table.insert(answers, outcome .. ":" .. id)
end
return table.concat(answers, ",")

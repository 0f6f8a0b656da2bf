-- run_create(kind ("fix" | "regression"), incident id, project, run id, now_ms, field, value, ...)
-- Starts a fix run or a regression run of an incident, unless one of that kind is already queued or running
-- for it: then that one is the answer (two requests at once, on two replicas, start one run). The run gets
-- the incident's next number n for its kind, goes into the incident's list of runs, becomes its active run,
-- and its engine job (fix_agent / regression_replay) is queued in the same step.
-- -> {"missing"} | {"existing", run id} | {"created", run id, n}
local kind, incident, project, run_id, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call("hget", k_incident(incident), "project") ~= project then
  return {"missing"}
end
local function run_key(id)
  if kind == "regression" then return k_regression_run(id) end
  return k_fix_run(id)
end
local runs_key, job = k_incident_fix_runs(incident), "fix_agent"
if kind == "regression" then
  runs_key, job = k_incident_regression_runs(incident), "regression_replay"
end
local active_key = k_incident_active_run(incident, kind)
local active = redis.call("get", active_key)
if active then
  local status = redis.call("hget", run_key(active), "status")
  if status == "queued" or status == "running" then
    return {"existing", active}
  end
end
local n = redis.call("hincrby", k_incident(incident), kind .. "_runs", 1)
local key = run_key(run_id)
redis.call("hset", key, "id", run_id, "kind", kind, "project", project, "incident_id", incident, "n", n,
  "status", "queued", "created_at", now, "updated_at", now)
for i = 6, #ARGV, 2 do
  redis.call("hset", key, ARGV[i], ARGV[i + 1])
end
redis.call("zadd", runs_key, n, run_id)
redis.call("set", active_key, run_id)
enqueue_job(job, {run_id}, now)
activity(project, kind == "fix" and "fix_run" or "regression_run", run_id, "queued", incident)
return {"created", run_id, tostring(n)}

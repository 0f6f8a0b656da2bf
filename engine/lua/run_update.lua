-- run_update(kind ("fix" | "regression"), run id, now_ms, expect (comma-separated statuses, "" = any),
--            field, value, ...)
-- Writes fields of a fix or regression run if its status is one of `expect`. A run that reaches a final
-- status (completed | failed) stops being its incident's active run, so the next request starts a new one.
-- -> {"missing"} | {"stale", status} | {"ok", status}
local kind, run_id, now, expect = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = kind == "regression" and k_regression_run(run_id) or k_fix_run(run_id)
local f = redis.call("hmget", key, "status", "incident_id", "project")
if not f[1] then
  return {"missing"}
end
if expect ~= "" and not string.find("," .. expect .. ",", "," .. f[1] .. ",", 1, true) then
  return {"stale", f[1]}
end
local status = f[1]
for i = 5, #ARGV, 2 do
  redis.call("hset", key, ARGV[i], ARGV[i + 1])
  if ARGV[i] == "status" then
    status = ARGV[i + 1]
  end
end
redis.call("hset", key, "updated_at", now)
if status ~= f[1] then
  activity(f[3], kind == "regression" and "regression_run" or "fix_run", run_id, status, f[2])
end
if status == "completed" or status == "failed" then
  local active_key = k_incident_active_run(f[2], kind)
  if redis.call("get", active_key) == run_id then
    redis.call("del", active_key)
  end
end
return {"ok", status}

-- incident_get(id, project, shown)
-- One incident of the project with its newest `shown` traces and tasks and its whole history (JSON entries,
-- oldest first). -> {"missing"} | {"ok", row (see incident_row), history}
local id, project, shown = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call("hget", k_incident(id), "project") ~= project then
  return {"missing"}
end
return {"ok", incident_row(id, shown), redis.call("lrange", k_incident_history(id), 0, -1)}

-- incident_update(id, project, status ("" = leave it), owner_given ("1"/"0"), owner, by, now_ms, max_history,
--                 shown)
-- Changes an incident's status and/or owner (PATCH /api/incidents/{id}); each change is appended to its
-- history ({at, by, field, from, to}). A status change moves it between status indexes with its score kept
-- (triage is not activity).
-- -> {"missing"} | {"ok", previous status ("" = unchanged), row (see incident_row), history (JSON entries)}
local id, project, status, owner_given, owner, by = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local now, max_history, shown = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local ikey = k_incident(id)
local f = redis.call("hmget", ikey, "project", "status", "owner", "seq", "failure_class")
if f[1] ~= project then
  return {"missing"}
end
local previous = ""
if status ~= "" and status ~= f[2] then
  redis.call("zrem", k_inc_status(project, f[2]), id)
  redis.call("zadd", k_inc_status(project, status), f[4], id)
  redis.call("hset", ikey, "status", status, "updated_at", now)
  if status == "resolved" then
    redis.call("hset", ikey, "resolved_at", now)
  else
    redis.call("hdel", ikey, "resolved_at")  -- reopened: no longer resolved
  end
  incident_log(id, {at = now, by = by, field = "status", from = f[2], to = status}, max_history)
  previous = f[2]
  activity(project, "incident", id, status, f[5])
end
local old_owner = f[3] or ""
if owner_given == "1" and owner ~= old_owner then
  redis.call("hset", ikey, "owner", owner, "updated_at", now)
  incident_log(id, {at = now, by = by, field = "owner", from = old_owner ~= "" and old_owner or cjson.null,
    to = owner ~= "" and owner or cjson.null}, max_history)
  if previous == "" then  -- an owner change alone: the feed still says the incident changed (same status)
    activity(project, "incident", id, f[2], f[5])
  end
end
return {"ok", previous, incident_row(id, shown), redis.call("lrange", k_incident_history(id), 0, -1)}

-- cancel(task_id, project, now_ms)
-- A pending task is cancelled at once (its message is skipped when it arrives); a dispatched one is signalled
-- to its process, which kills the run and records `cancelled`.
-- Returns {"cancelled"} | {"signalled"} | {"final", state} | {"missing"}
local id, project, now = ARGV[1], ARGV[2], ARGV[3]
local t = k_task(id)
local f = redis.call("hmget", t, "state", "project", "owner")
local state, owner = f[1], f[3]
if not state or f[2] ~= project then
  return {"missing"}
end
if FINAL[state] then
  return {"final", state}
end
if state == "pending" then
  finalize(id, "cancelled", now, "error", "cancelled")
  return {"cancelled"}
end
redis.call("hset", t, "cancel_requested", now)
redis.call("lpush", k_proc_cancel(owner), id)
redis.call("expire", k_proc_cancel(owner), 3600)
return {"signalled"}

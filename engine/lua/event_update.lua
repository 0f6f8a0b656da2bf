-- event_update(event_id, new_state, now_ms, detail, expect, follow, audit_max, n_audit,
--              [action, event, task, detail_json] * n_audit, [field, value] * rest)
-- Writes fields and moves the event to new_state ("" keeps its state), keeping the state indexes exact and
-- appending to its history. `expect` is a comma-separated list of states the event must be in ("" = any):
-- two jobs racing to move the same event make one transition. With follow = "1", a dispatched event whose
-- tasks have all ended moves on to completed / failed in the same step (see follow_event). Audit entries
-- (already redacted) ride along, whatever the outcome: one round trip for the end of an engine job.
-- Returns {"ok", state} | {"stale", state} | {"missing"}
local id, new, now, detail, expect, follow = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local audit_max, n_audit = ARGV[7], tonumber(ARGV[8])
local e = k_event(id)
local f = redis.call("hmget", e, "state", "project", "source", "seq")
local state, project, source, seq = f[1], f[2], f[3], f[4]
for i = 9, 8 + 4 * n_audit, 4 do
  redis.call("xadd", k_audit(), "MAXLEN", "~", audit_max, "*", "action", ARGV[i], "project", project or "",
             "event", ARGV[i + 1], "task", ARGV[i + 2], "detail", ARGV[i + 3])
end
if not state then
  return {"missing"}
end
if expect ~= "" and not string.find("," .. expect .. ",", "," .. state .. ",", 1, true) then
  return {"stale", state}
end
for i = 9 + 4 * n_audit, #ARGV, 2 do
  redis.call("hset", e, ARGV[i], ARGV[i + 1])
end
redis.call("hset", e, "updated_at", now)
merge_deferred(id)
if new ~= "" and new ~= state then
  move_event(id, project, source, seq, state, new, now, detail)
  state = new
end
if follow == "1" then
  state = follow_event(id, now)
end
return {"ok", state}

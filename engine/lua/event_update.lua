-- event_update(event_id, new_state, now_ms, detail, expect, [field, value] * rest)
-- Writes fields and moves the event to new_state ("" keeps its state), keeping the state indexes exact and
-- appending to its history. `expect` is a comma-separated list of states the event must be in ("" = any):
-- two jobs racing to move the same event make one transition.
-- Returns {"ok", state} | {"stale", state} | {"missing"}
local id, new, now, detail, expect = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local e = k_event(id)
local f = redis.call("hmget", e, "state", "project", "source", "seq")
local state, project, source, seq = f[1], f[2], f[3], f[4]
if not state then
  return {"missing"}
end
if expect ~= "" and not string.find("," .. expect .. ",", "," .. state .. ",", 1, true) then
  return {"stale", state}
end
for i = 6, #ARGV, 2 do
  redis.call("hset", e, ARGV[i], ARGV[i + 1])
end
redis.call("hset", e, "updated_at", now)
if new ~= "" and new ~= state then
  redis.call("zrem", k_ev_state(project, state), id)
  redis.call("zrem", k_ev_source_state(project, source, state), id)
  redis.call("zadd", k_ev_state(project, new), seq, id)
  redis.call("zadd", k_ev_source_state(project, source, new), seq, id)
  redis.call("hset", e, "state", new)
  local entry = {state = new, detail = detail}
  redis.call("rpush", k_event_history(id), string.sub(cjson.encode(entry), 1, -2) .. ',"at":' .. now .. '}')
  redis.call("hincrby", k_metrics(), "events_" .. new, 1)
  state = new
end
return {"ok", state}

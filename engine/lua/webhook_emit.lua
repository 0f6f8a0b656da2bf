-- webhook_emit(project, type, event_key, now_ms, data_json, failure_class, only, ttl_ms)
-- One event to the project's subscriptions of `type` (or to the one subscription `only`, for a test delivery):
-- per subscription that wants it (its `classes`, when set, name `failure_class`), a delivery record and a
-- `deliver_webhook` engine job, in this one step. A delivery's id is derived from `event_key` and the
-- subscription, so emitting the same event again (a redelivered job) adds nothing. -> the new delivery ids
local project, etype, event_key, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local data, cls, only, ttl = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
local ids
if only ~= "" then
  ids = {only}
else
  ids = redis.call("smembers", k_hooks_event(project, etype))
  table.sort(ids)
end
local made = {}
for _, wid in ipairs(ids) do
  local f = redis.call("hmget", k_webhook(wid), "project", "classes")
  local wanted = f[1] == project
  if wanted and cls ~= "" and f[2] and f[2] ~= "[]" then
    wanted = false
    for _, c in ipairs(cjson.decode(f[2])) do
      if c == cls then
        wanted = true
      end
    end
  end
  if wanted then
    local did = string.sub(redis.sha1hex(event_key .. ":" .. wid), 1, 32)
    local dkey = k_hook_delivery(did)
    if redis.call("exists", dkey) == 0 then
      redis.call("hset", dkey, "id", did, "webhook", wid, "project", project, "type", etype, "created_at", now,
        "data", data, "status", "pending", "attempts", 0)
      redis.call("pexpire", dkey, ttl)
      enqueue_job("deliver_webhook", {did}, now)
      table.insert(made, did)
    end
  end
end
return made

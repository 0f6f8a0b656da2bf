-- webhook_delete(id, project)
-- Removes a subscription, its event indexes and its delivery log. Deliveries already queued find it gone and
-- fail with "webhook deleted". -> 1 removed | 0 no such subscription in the project
local id, project = ARGV[1], ARGV[2]
local h = k_webhook(id)
local f = redis.call("hmget", h, "project", "events")
if f[1] ~= project then
  return 0
end
for _, event in ipairs(cjson.decode(f[2] or "[]")) do
  redis.call("srem", k_hooks_event(project, event), id)
end
redis.call("srem", k_hooks_task(project), id)
if redis.call("scard", k_hooks_task(project)) == 0 then
  redis.call("del", k_hooks_task(project))
end
redis.call("zrem", k_webhooks(project), id)
redis.call("del", h, k_webhook_log(id))
return 1

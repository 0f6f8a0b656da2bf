-- webhook_list(project, limit)
-- A project's alert webhook subscriptions, newest first: one HGETALL answer per subscription.
local project, limit = ARGV[1], tonumber(ARGV[2])
local rows = {}
for _, id in ipairs(redis.call("zrevrange", k_webhooks(project), 0, limit - 1)) do
  table.insert(rows, redis.call("hgetall", k_webhook(id)))
end
return rows

-- worker_status(online_since_ms, name...)
-- For each named worker (every defined worker, by name, when none is named):
-- {name, definition_json, depth, running, last_heartbeat_ms, [proc, concurrency, error]*}
-- listing only live processes (heartbeat at or after online_since_ms).
local online_since = ARGV[1]
local names = {}
for i = 2, #ARGV do
  table.insert(names, ARGV[i])
end
if #names == 0 then
  names = redis.call("smembers", k_workers())
  table.sort(names)
end
local out = {}
for _, w in ipairs(names) do
  local def = redis.call("get", k_worker_def(w))
  if def then
    local row = {w, def, redis.call("zcard", k_worker_active(w)), redis.call("scard", k_worker_running(w)),
                 redis.call("get", k_worker_seen(w)) or ""}
    for _, p in ipairs(redis.call("zrangebyscore", k_worker_procs(w), online_since, "+inf")) do
      local info = redis.call("hmget", k_proc(p), "concurrency:" .. w, "error:" .. w)
      table.insert(row, p)
      table.insert(row, info[1] or "0")
      table.insert(row, info[2] or "")
    end
    table.insert(out, row)
  end
end
return out

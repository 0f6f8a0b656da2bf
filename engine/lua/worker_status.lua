-- worker_status(online_since_ms, name...)
-- For each defined worker: {name, definition_json, depth, running, last_heartbeat_ms, [proc, concurrency, error]*}
-- listing only live processes (heartbeat at or after online_since_ms).
local online_since = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local w = ARGV[i]
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

-- claim(task_id, proc_id, now_ms, max_lost, bucket_1, ..., bucket_n)
-- A worker process took the task's message. Moves it to `dispatched` unless that would run it twice.
-- Returns {"run", <HGETALL of the task>} | {"skip", reason}
local id, proc, now, max_lost = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local t = k_task(id)
local f = redis.call("hmget", t, "state", "owner", "not_before", "worker_name", "project", "seq", "lost")
local state, owner, not_before, worker, project, seq = f[1], f[2], f[3], f[4], f[5], f[6]
if not state then
  return {"skip", "missing"}
end
if FINAL[state] then
  return {"skip", state}
end
if state == "dispatched" then
  if owner == proc then
    return {"skip", "running_here"}
  end
  if owner and redis.call("exists", k_proc(owner)) == 1 then
    return {"skip", "running_elsewhere"}
  end
  -- Its process is gone and the reaper has not noticed yet: take the task over.
  local lost = redis.call("hincrby", t, "lost", 1)
  if owner then
    redis.call("srem", k_proc_tasks(owner), id)
  end
  if lost >= max_lost then
    finalize(id, "failed", now, "error", "worker lost")
    return {"skip", "lost"}
  end
elseif not_before and tonumber(not_before) > now + 50 then
  return {"skip", "early"}
end

move_state(id, project, worker, seq, state, "dispatched")
local attempts = redis.call("hincrby", t, "attempts", 1)
redis.call("hset", t, "owner", proc, "dispatched_at", now)
redis.call("hdel", t, "not_before")
redis.call("zrem", k_delayed(), id)
redis.call("sadd", k_worker_running(worker), id)
redis.call("sadd", k_proc_tasks(proc), id)
if attempts == 1 then
  local created = tonumber(redis.call("hget", t, "created_at"))
  local latency = now - created
  local h = k_latency()
  for i = 5, #ARGV do
    if latency <= tonumber(ARGV[i]) then
      redis.call("hincrby", h, ARGV[i], 1)
    end
  end
  redis.call("hincrby", h, "+Inf", 1)
  redis.call("hincrbyfloat", h, "sum_ms", latency)
end
return {"run", redis.call("hgetall", t)}

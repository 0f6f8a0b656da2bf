-- reap(mode, now_ms, max_lost, arg, cutoff_ms, name...)
-- mode "dead": `arg` is a process that stopped heartbeating (the names are the workers it served). Checked again
--              here: if its heartbeat key exists or any of its scores is newer than cutoff_ms it is alive and
--              nothing happens (-1). Otherwise its dispatched tasks go back on their queues (or fail with
--              "worker lost" after max_lost deliveries) and the process is forgotten.
-- mode "release": like "dead" for a process that is stopping cleanly: no liveness check, no lost delivery.
-- mode "due": the names are delayed retries whose time has come; each pending one is enqueued.
-- mode "missing": the names are old pending tasks; each whose Dramatiq message is gone is enqueued again.
-- A task whose worker was removed fails with "worker removed" instead of being enqueued.
-- Returns the number of tasks put back on a queue.
local mode, now, max_lost, arg, cutoff = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local requeued = 0

if mode == "dead" or mode == "release" then
  local proc = arg
  if mode == "dead" then
    if redis.call("exists", k_proc(proc)) == 1 then
      return -1
    end
    for i = 6, #ARGV do
      local score = redis.call("zscore", k_worker_procs(ARGV[i]), proc)
      if score and tonumber(score) > cutoff then
        return -1
      end
    end
  end
  for _, id in ipairs(redis.call("smembers", k_proc_tasks(proc))) do
    local t = k_task(id)
    local f = redis.call("hmget", t, "state", "owner", "worker_name")
    if f[1] == "dispatched" and f[2] == proc then
      local lost = mode == "dead" and redis.call("hincrby", t, "lost", 1) or 0
      if lost >= max_lost then
        finalize(id, "failed", now, "error", "worker lost")
      else
        release(id, f[3], proc, now)
        if requeue(f[3], id, now) then
          requeued = requeued + 1
        end
      end
    end
  end
  redis.call("del", k_proc_tasks(proc), k_proc(proc), k_proc_cancel(proc))
  for i = 6, #ARGV do
    redis.call("zrem", k_worker_procs(ARGV[i]), proc)
  end
elseif mode == "due" then
  for i = 6, #ARGV do
    local id = ARGV[i]
    redis.call("zrem", k_delayed(), id)
    local f = redis.call("hmget", k_task(id), "state", "worker_name")
    if f[1] == "pending" and requeue(f[2], id, now) then
      requeued = requeued + 1
    end
  end
elseif mode == "missing" then
  for i = 6, #ARGV do
    local id = ARGV[i]
    local f = redis.call("hmget", k_task(id), "state", "worker_name", "msg")
    -- Lost: no message at all, or a message that left the queue list but was never claimed (its consumer
    -- died between fetch and claim), or its worker was removed. A duplicate message is harmless: claim
    -- runs a task once.
    if f[1] == "pending" and not redis.call("zscore", k_delayed(), id)
        and (redis.call("exists", k_worker_def(f[2])) == 0 or not f[3]
             or redis.call("hexists", k_dq_msgs(f[2]), f[3]) == 0
             or not redis.call("lpos", k_dq_queue(f[2]), f[3])) then
      if requeue(f[2], id, now) then
        requeued = requeued + 1
      end
    end
  end
end
return requeued

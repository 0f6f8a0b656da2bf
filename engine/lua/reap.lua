-- reap(mode, now_ms, max_lost, arg, id...)
-- mode "dead": `arg` is a process that stopped heartbeating; its dispatched tasks go back on their queues
--              (or fail with "worker lost" after max_lost deliveries), and the process is forgotten.
-- mode "due": the ids are delayed retries whose time has come; each pending one is enqueued.
-- mode "missing": the ids are old pending tasks; each whose Dramatiq message is gone is enqueued again.
-- Returns the number of tasks put back on a queue.
local mode, now, max_lost, arg = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local requeued = 0

if mode == "dead" then
  local proc = arg
  local ids = redis.call("smembers", k_proc_tasks(proc))
  for _, id in ipairs(ids) do
    local t = k_task(id)
    local f = redis.call("hmget", t, "state", "owner", "worker_name")
    if f[1] == "dispatched" and f[2] == proc then
      local lost = redis.call("hincrby", t, "lost", 1)
      if lost >= max_lost then
        finalize(id, "failed", now, "error", "worker lost")
      else
        release(id, f[3], proc, now)
        enqueue(f[3], id, now)
        requeued = requeued + 1
      end
    end
  end
  redis.call("del", k_proc_tasks(proc), k_proc(proc), k_proc_cancel(proc))
  for i = 5, #ARGV do
    redis.call("zrem", k_worker_procs(ARGV[i]), proc)
  end
elseif mode == "due" then
  for i = 5, #ARGV do
    local id = ARGV[i]
    redis.call("zrem", k_delayed(), id)
    local f = redis.call("hmget", k_task(id), "state", "worker_name")
    if f[1] == "pending" then
      enqueue(f[2], id, now)
      requeued = requeued + 1
    end
  end
elseif mode == "missing" then
  for i = 5, #ARGV do
    local id = ARGV[i]
    local f = redis.call("hmget", k_task(id), "state", "worker_name", "msg")
    -- Lost: no message at all, or a message that left the queue list but was never claimed (its consumer
    -- died between fetch and claim). A duplicate message is harmless: claim runs a task once.
    if f[1] == "pending" and not redis.call("zscore", k_delayed(), id)
        and (not f[3] or redis.call("hexists", k_dq_msgs(f[2]), f[3]) == 0
             or not redis.call("lpos", k_dq_queue(f[2]), f[3])) then
      enqueue(f[2], id, now)
      requeued = requeued + 1
    end
  end
end
return requeued

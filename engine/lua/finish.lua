-- finish(task_id, proc_id, now_ms, outcome, text, expect_state, retry_at_ms, ack_key, msgs_key, message_id,
--        [field, value] * rest)
-- outcome: completed | failed | cancelled (final; `text` is the result or the error),
--          retry (back to pending until retry_at_ms, the reaper re-enqueues it then),
--          requeue (back to pending and on the queue now: the process is stopping).
-- Only the owning process may retry or requeue; a final outcome is taken from whoever finishes first.
-- expect_state, when set, must be the task's current state (the reaper uses it to fail pending tasks).
-- ack_key/msgs_key/message_id, when set, also acknowledge the Dramatiq message that carried the run (what
-- Dramatiq's "ack" does), whatever the outcome: one round trip instead of two.
-- Returns {"ok", state} | {"stale", state}
local id, proc, now, outcome, text = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local expect, retry_at = ARGV[6], ARGV[7]
if ARGV[10] ~= "" and redis.call("srem", ARGV[8], ARGV[10]) > 0 then
  redis.call("hdel", ARGV[9], ARGV[10])
end
local t = k_task(id)
local f = redis.call("hmget", t, "state", "owner", "worker_name")
local state, owner, worker = f[1], f[2], f[3]
if not state then
  return {"stale", "missing"}
end
if FINAL[state] or (expect ~= "" and state ~= expect) then
  return {"stale", state}
end
if (outcome == "retry" or outcome == "requeue") and (state ~= "dispatched" or owner ~= proc) then
  return {"stale", state}
end

for i = 11, #ARGV, 2 do
  redis.call("hset", t, ARGV[i], ARGV[i + 1])
end

if outcome == "completed" then
  finalize(id, "completed", now, "result", text)
elseif outcome == "failed" or outcome == "cancelled" then
  finalize(id, outcome, now, "error", text)
elseif outcome == "retry" then
  release(id, worker, owner, now)
  redis.call("hset", t, "error", text, "not_before", retry_at)
  redis.call("zadd", k_delayed(), retry_at, id)
  return {"ok", "pending"}
elseif outcome == "requeue" then
  release(id, worker, owner, now)
  if not requeue(worker, id, now) then
    return {"ok", "failed"}
  end
  return {"ok", "pending"}
else
  return redis.error_reply("unknown outcome " .. tostring(outcome))
end
return {"ok", outcome}

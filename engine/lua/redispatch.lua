-- redispatch(task_id, from_worker, now_ms, rr_group, online_since_ms, n, [name, bound] * n)
-- A round-robin task stranded on a worker with no live process moves to another candidate: its message leaves
-- the old queue, its worker indexes and depth move, a fresh message goes on the new queue, and the dispatch
-- decision records the move. Only a task still pending on `from_worker` (and not waiting for a retry) moves.
-- Returns {"ok", worker} | {"none", skipped_json} | {"skip", state}
local id, from, now, group = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local online_since, n = tonumber(ARGV[5]), tonumber(ARGV[6])
local t = k_task(id)
local f = redis.call("hmget", t, "state", "worker_name", "project", "seq", "msg", "created_at", "dispatch")
local state, worker, project, seq, mid, created, dispatch = f[1], f[2], f[3], f[4], f[5], f[6], f[7]
if state ~= "pending" or worker ~= from or redis.call("zscore", k_delayed(), id) then
  return {"skip", tostring(state)}
end
local chosen, _, _, skipped = choose(7, n, 2, group, true, online_since, {})
if not chosen then
  return {"none", cjson.encode(skipped)}
end
if mid then
  redis.call("lrem", k_dq_queue(from), 0, mid)
  redis.call("hdel", k_dq_msgs(from), mid)
end
redis.call("zrem", k_idx_worker(project, from), id)
redis.call("zrem", k_idx_worker_state(project, from, "pending"), id)
redis.call("zrem", k_worker_active(from), id)
redis.call("hset", t, "worker_name", chosen)
redis.call("zadd", k_idx_worker(project, chosen), seq, id)
redis.call("zadd", k_idx_worker_state(project, chosen, "pending"), seq, id)
redis.call("zadd", k_worker_active(chosen), created, id)
local decision = dispatch and cjson.decode(dispatch) or {}
decision.chosen = chosen
decision.redispatched = {from = from, reason = "offline", at = tonumber(now)}
redis.call("hset", t, "dispatch", cjson.encode(decision))
enqueue(chosen, id, now)
redis.call("hincrby", k_metrics(), "tasks_redispatched", 1)
return {"ok", chosen}

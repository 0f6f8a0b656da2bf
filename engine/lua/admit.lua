-- admit(task_id, project, now_ms, idem_key, rr_group, policy, require_online, online_since_ms,
--       skipped_json, n_candidates, [name, bound, max_retries, timeout] * n, [field, value] * rest)
-- A candidate's max_retries and timeout are the defaults written when the fields do not set them.
-- Picks a worker among the candidates (round-robin from the group's cursor when rr_group is set), checks its
-- depth against its bound, writes the task and its indexes, and enqueues the Dramatiq message: all or nothing.
-- Returns {"ok", worker, decision_json} | {"dup", task_id} | {"full", decision_json} | {"offline", decision_json}
local id, project, now = ARGV[1], ARGV[2], ARGV[3]
local idem, group, policy = ARGV[4], ARGV[5], ARGV[6]
local require_online, online_since = ARGV[7] == "1", tonumber(ARGV[8])
local skipped = cjson.decode(ARGV[9])
local n = tonumber(ARGV[10])

if idem ~= "" then
  local existing = redis.call("get", k_idem(project, idem))
  if existing and redis.call("exists", k_task(existing)) == 1 then
    return {"dup", existing}
  end
end

local STRIDE = 4
local chosen, chosen_at, candidates
chosen, chosen_at, candidates, skipped = choose(11, n, STRIDE, group, require_online, online_since, skipped)

local decision = {policy = policy, candidates = candidates, skipped = skipped}
if not chosen then
  for _, s in ipairs(skipped) do
    if s.reason == "full" then
      return {"full", cjson.encode(decision)}
    end
  end
  return {"offline", cjson.encode(decision)}
end
decision.chosen = chosen
local decision_json = cjson.encode(decision)

local t = k_task(id)
local seq = redis.call("incr", k_task_seq())
local mid = id .. "-0"  -- the first delivery; later ones take ids from the message counter
local fields = {"id", id, "project", project, "worker_name", chosen, "created_at", now, "seq", seq,
                "attempts", 0, "lost", 0, "dispatch", decision_json, "state", "pending", "msg", mid,
                "max_retries", ARGV[chosen_at + 2], "timeout", ARGV[chosen_at + 3]}
for i = 11 + STRIDE * n, #ARGV do
  table.insert(fields, ARGV[i])
end
redis.call("hset", t, unpack(fields))
redis.call("zadd", k_idx_all(project), seq, id)
redis.call("zadd", k_idx_worker(project, chosen), seq, id)
redis.call("zadd", k_idx_state(project, "pending"), seq, id)
redis.call("zadd", k_idx_worker_state(project, chosen, "pending"), seq, id)
redis.call("zadd", k_worker_active(chosen), now, id)
redis.call("sadd", k_projects(), project)  -- the retention sweep's list of projects
if idem ~= "" then
  redis.call("set", k_idem(project, idem), id)
end
enqueue(chosen, id, now, mid, true)
redis.call("hincrby", k_metrics(), "tasks_created", 1)
activity(project, "task", id, "pending", chosen, true)
return {"ok", chosen, decision_json}

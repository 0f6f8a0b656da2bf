-- trace_create(id, project, now_ms, name, agent, worker, task_id, source, metadata_json, tags_json)
-- Creates a trace (status "running") with its list indexes, or answers the one already there.
-- -> {"created", fields} | {"exists", fields} | {"taken"} (the id belongs to another project)
local id, project, now = ARGV[1], ARGV[2], ARGV[3]
local tkey = k_trace(id)
local owner = redis.call("hget", tkey, "project")
if owner then
  if owner ~= project then return {"taken"} end
  return {"exists", redis.call("hgetall", tkey)}
end
local name, agent, worker, task_id, source = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local seq = redis.call("incr", k_trace_seq())
redis.call("hset", tkey, "id", id, "project", project, "name", name, "agent", agent, "worker", worker,
  "task_id", task_id, "source", source, "metadata", ARGV[9], "tags", ARGV[10], "status", "running",
  "created_at", now, "updated_at", now, "seq", seq, "events", 0, "last_seq", 0, "tokens_in", 0,
  "tokens_out", 0, "cost_usd", 0)
trace_index(project, id, agent, "running", seq)
redis.call("sadd", k_projects(), project)  -- the retention sweep's list of projects
return {"created", redis.call("hgetall", tkey)}

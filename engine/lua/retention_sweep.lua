-- retention_sweep(kind, project, state, cutoff_ms, after_seq, batch)
-- Deletes expired records of one kind (tasks | events | traces) of one project, with everything that belongs
-- to them. It walks a list index oldest first (the score is the seq, which grows with creation time): for tasks
-- and events the index of one final `state`; for traces (state "any") the index of all traces, since a trace
-- enters a status index when it ends, at the seq of its creation. The walk starts strictly after `after_seq`
-- ("" = from the start) and examines at most `batch` entries. A record is expired when its final time is at or
-- before cutoff_ms: a task's completed_at, an event's updated_at, a trace's updated_at (set by every batch and
-- by its end). The walk stops at the first record created after the cutoff: every later entry was created later
-- still, so none of them can have expired. Each record's own hash is checked, not only the index it is in: one
-- that is not final (a task or event in progress, a trace still running) is never deleted.
--   task:  its hash, every list index (all, state, worker, worker + state), its idempotency key if the key
--          still names it, its Dramatiq message body if one is left, and its trace (below). A task whose trace
--          still runs is kept until the trace ends.
--   event: its hash, history, deferred outcomes, write-back results, list indexes. The delivery dedupe key
--          is left to expire by itself (7 days), so a redelivery in that window is still recognised.
--   trace: only an ended trace that belongs to no task still stored (a task's trace goes with its task):
--          its hash, events stream, idempotency keys, analysis, live-scan keys, artifact metadata and index,
--          and its list indexes.
-- Traces of tasks still stored are skipped by the trace walk until their task goes; so that the walk does not
-- read them again every sweep, it keeps per project the seq up to which every trace is deleted or belongs to a
-- stored task (k_retention_mark, field "traces"; a running trace stops it); a walk with after_seq "" starts there.
-- -> {deleted, last_seq_examined, more (1: stopped at the batch limit, call again after last_seq), artifact ids}
local kind, project, state = ARGV[1], ARGV[2], ARGV[3]
local cutoff, after, batch = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
-- matched: only rules with auto: false matched; nothing moves such an event on (engine.events.SETTLED_STATES)
local EVENT_FINAL = {completed = true, failed = true, skipped = true, write_back_failed = true, matched = true}
local files = {}

-- A trace's keys and index entries; its artifacts' metadata (their ids go back so the caller removes the files).
local function drop_trace(id, project, status, agent)
  for _, aid in ipairs(redis.call("zrange", k_trace_artifacts(id), 0, -1)) do
    redis.call("del", k_artifact(aid))
    files[#files + 1] = aid
  end
  redis.call("del", k_trace(id), k_trace_events(id), k_trace_keys(id), k_trace_analysis(id), k_trace_scan(id),
    k_trace_scan_dirty(id), k_trace_artifacts(id))
  redis.call("zrem", k_tr_all(project), id)
  if status then
    trace_unindex(project, id, agent or "", status)
    if agent and agent ~= "" then redis.call("zrem", k_tr_agent(project, agent), id) end
  end
end

-- Answers "young" (created after the cutoff: stop), "deleted", "settled" (nothing to do, and never will be
-- for this walk), or "kept" (not expired or not final yet: look again in a later sweep).
local function task(id)
  local f = redis.call("hmget", k_task(id), "project", "state", "worker_name", "created_at", "completed_at",
    "idempotency_key", "msg")
  if not f[2] then
    redis.call("zrem", k_idx_state(project, state), id)  -- a dangling entry
    return "settled"
  end
  if (tonumber(f[4]) or 0) > cutoff then return "young" end
  if f[1] ~= project or f[2] ~= state or not FINAL[state] then return "kept" end
  if (tonumber(f[5]) or tonumber(f[4]) or 0) > cutoff then return "kept" end
  local tr = redis.call("hmget", k_trace(id), "project", "status", "agent")
  local own = tr[1] == project
  if own and tr[2] == "running" then return "kept" end
  local worker = f[3]
  redis.call("del", k_task(id))
  redis.call("zrem", k_idx_all(project), id)
  redis.call("zrem", k_idx_state(project, state), id)
  redis.call("zrem", k_idx_worker(project, worker), id)
  redis.call("zrem", k_idx_worker_state(project, worker, state), id)
  if f[6] and f[6] ~= "" and redis.call("get", k_idem(project, f[6])) == id then
    redis.call("del", k_idem(project, f[6]))
  end
  if f[7] then redis.call("hdel", k_dq_msgs(worker), f[7]) end  -- a cancelled task's message never consumed
  if own or not tr[1] then drop_trace(id, project, tr[2], tr[3]) end
  return "deleted"
end

local function event(id)
  local f = redis.call("hmget", k_event(id), "project", "state", "source", "created_at", "updated_at")
  if not f[2] then
    redis.call("zrem", k_ev_state(project, state), id)
    return "settled"
  end
  if (tonumber(f[4]) or 0) > cutoff then return "young" end
  if f[1] ~= project or f[2] ~= state or not EVENT_FINAL[state] then return "kept" end
  if (tonumber(f[5]) or tonumber(f[4]) or 0) > cutoff then return "kept" end
  local source = f[3]
  redis.call("del", k_event(id), k_event_history(id), k_event_deferred(id), k_event_wb(id))
  redis.call("zrem", k_ev_all(project), id)
  redis.call("zrem", k_ev_state(project, state), id)
  redis.call("zrem", k_ev_source(project, source), id)
  redis.call("zrem", k_ev_source_state(project, source, state), id)
  redis.call("zrem", k_ev_open(), id)
  return "deleted"
end

local function trace(id)
  local f = redis.call("hmget", k_trace(id), "project", "status", "agent", "task_id", "created_at", "updated_at",
    "ended_at")
  if not f[2] then
    redis.call("zrem", k_tr_all(project), id)
    return "settled"
  end
  if (tonumber(f[5]) or 0) > cutoff then return "young" end
  if f[4] and f[4] ~= "" and redis.call("exists", k_task(f[4])) == 1 then
    return "settled"  -- its task's sweep deletes it with the task
  end
  if f[1] ~= project or f[2] == "running" then return "kept" end
  if (tonumber(f[6]) or tonumber(f[7]) or tonumber(f[5]) or 0) > cutoff then return "kept" end
  drop_trace(id, project, f[2], f[3])
  return "deleted"
end

local index, look, mark_key, mark
if kind == "tasks" then
  index, look = k_idx_state(project, state), task
elseif kind == "events" then
  index, look = k_ev_state(project, state), event
elseif kind == "traces" and state == "any" then
  index, look = k_tr_all(project), trace
  mark_key = k_retention_mark(project)
  mark = redis.call("hget", mark_key, "traces") or ""
  if after == "" then after = mark end
else
  return redis.error_reply("unknown retention walk " .. tostring(kind) .. " " .. tostring(state))
end

local from = after == "" and "-inf" or "(" .. after
local entries = redis.call("zrangebyscore", index, from, "+inf", "WITHSCORES", "LIMIT", 0, batch)
local deleted, last, young = 0, after, false
local settled_to, contiguous = nil, mark ~= nil and after == mark
for i = 1, #entries, 2 do
  local outcome = look(entries[i])
  if outcome == "young" then
    young = true
    break
  end
  last = entries[i + 1]
  if outcome == "deleted" then deleted = deleted + 1 end
  if contiguous and outcome ~= "kept" then
    settled_to = last
  else
    contiguous = false
  end
end
if settled_to and (mark == "" or tonumber(settled_to) > tonumber(mark)) then
  redis.call("hset", mark_key, "traces", settled_to)
end
local more = (not young) and #entries == 2 * batch
return {deleted, last, more and 1 or 0, files}

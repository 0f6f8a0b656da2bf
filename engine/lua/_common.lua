-- Helpers shared by every Taskyard script. The loader prepends the generated k_<name>() key functions
-- (engine/keys.py) and this file to each script, so keys are spelled once, in Python.
-- Scripts touch keys they derive from task and worker names: Taskyard needs a single Redis node (not Cluster).

local FINAL = {completed = true, failed = true, cancelled = true}
local WAKE_TOKENS_MAX = 16  -- tokens kept on a worker's wake-up list (enough to wake every idle consumer)

local ACTIVITY_MAX = 10000  -- entries of a project's activity stream kept (approximately: MAXLEN ~)
local MINUTES_TTL_S = 7200  -- seconds an hour's per-minute task counters are kept
local COUNTED = {completed = "completed", failed = "failed"}  -- outcomes; creations are counted by admit only

-- One entry on the project's activity stream (GET /api/activity, the dashboard's live feed): kind (task, event,
-- incident, fix_run, regression_run), id, state and a short extra (the worker, the source...). A task's creation
-- and its outcome also count into per-minute counters (GET /api/stats/tasks); the minute comes from the entry's
-- id (the server's clock), so replicas with skewed clocks agree.
local function activity(project, kind, id, state, extra, created)
  local xid = redis.call("xadd", k_activity(project), "MAXLEN", "~", ACTIVITY_MAX, "*", "k", kind, "i", id,
    "s", state, "x", extra or "")
  -- a task back to pending (a retry, a requeue) is not a new task: only admit counts "created"
  local counted = kind == "task" and ((created and "created") or COUNTED[state])
  if counted then
    local minute = math.floor(tonumber(string.match(xid, "^%d+")) / 60000)
    local key = k_task_minutes(project, math.floor(minute / 60))
    if redis.call("hincrby", key, minute .. ":" .. counted, 1) == 1 then
      redis.call("expire", key, MINUTES_TTL_S)
    end
  end
end

-- Move a task between states, keeping the per-state indexes exact.
local function move_state(id, project, worker, seq, old, new)
  if old and old ~= new then
    redis.call("zrem", k_idx_state(project, old), id)
    redis.call("zrem", k_idx_worker_state(project, worker, old), id)
  end
  redis.call("zadd", k_idx_state(project, new), seq, id)
  redis.call("zadd", k_idx_worker_state(project, worker, new), seq, id)
  redis.call("hset", k_task(id), "state", new)
  if old ~= new then
    activity(project, "task", id, new, worker)
  end
end

-- Put a Dramatiq message for the task on its worker's queue (Dramatiq 2.2.1's Redis layout: HSET the
-- encoded message into <ns>:<queue>.msgs, RPUSH its id onto <ns>:<queue>) and wake one idle consumer.
-- `mid` (the message id) must be new for every delivery; `first` = the task's first one: the caller has
-- already written `msg` into the task record with its other fields (one HSET fewer on the admission path).
local function enqueue(worker, id, now, mid, first)
  mid = mid or (id .. "-" .. redis.call("incr", k_msg_seq()))
  local msg = '{"queue_name":"' .. QUEUE_PREFIX .. worker .. '","actor_name":"' .. ACTOR_PREFIX .. worker
    .. '","args":["' .. id .. '"],"kwargs":{},"options":{"redis_message_id":"' .. mid
    .. '"},"message_id":"' .. mid .. '","message_timestamp":' .. now .. '}'
  redis.call("hset", k_dq_msgs(worker), mid, msg)
  redis.call("rpush", k_dq_queue(worker), mid)
  if redis.call("lpush", k_worker_wake(worker), "1") > WAKE_TOKENS_MAX then
    redis.call("ltrim", k_worker_wake(worker), 0, WAKE_TOKENS_MAX - 1)
  end
  if not first then
    redis.call("hset", k_task(id), "msg", mid)
  end
  return mid
end

-- Put an engine job on the ty.engine queue (Dramatiq 2.2.1's layout, as `enqueue`): a message for `actor`
-- with the string arguments `args`. Engine jobs run in `taskyard serve` (workers/engine_queue.py).
local function enqueue_job(actor, args, now)
  local mid = "job-" .. redis.call("incr", k_msg_seq())
  local encoded = {}
  for i, a in ipairs(args) do
    encoded[i] = cjson.encode(tostring(a))
  end
  local msg = '{"queue_name":"' .. ENGINE_QUEUE .. '","actor_name":' .. cjson.encode(actor) .. ',"args":['
    .. table.concat(encoded, ",") .. '],"kwargs":{},"options":{"redis_message_id":"' .. mid
    .. '"},"message_id":"' .. mid .. '","message_timestamp":' .. now .. '}'
  redis.call("hset", k_dq_engine_msgs(), mid, msg)
  redis.call("rpush", k_dq_engine(), mid)
  return mid
end

-- A trace in its list indexes: all, by status, by agent, by agent and status (score = its list seq).
local function trace_index(project, id, agent, status, seq)
  redis.call("zadd", k_tr_all(project), seq, id)
  redis.call("zadd", k_tr_status(project, status), seq, id)
  if agent ~= "" then
    redis.call("zadd", k_tr_agent(project, agent), seq, id)
    redis.call("zadd", k_tr_agent_status(project, agent, status), seq, id)
  end
end

-- Takes a trace out of the indexes of one status (before trace_index puts it under another).
local function trace_unindex(project, id, agent, status)
  redis.call("zrem", k_tr_status(project, status), id)
  if agent ~= "" then redis.call("zrem", k_tr_agent_status(project, agent, status), id) end
end

-- An incident in its list indexes: all, by status, by class, by each worker it remembers. The score is its
-- last-activity seq, the same in every index, so a cursor means the same whichever index serves the next page.
local function incident_index(project, id, status, cls, seq)
  redis.call("zadd", k_inc_all(project), seq, id)
  redis.call("zadd", k_inc_status(project, status), seq, id)
  redis.call("zadd", k_inc_class(project, cls), seq, id)
  for _, w in ipairs(redis.call("zrange", k_incident_workers(id), 0, -1)) do
    redis.call("zadd", k_inc_worker(project, w), seq, id)
  end
end

-- Appends a change ({at, by, field, from, to, trace_id?}) to an incident's history, keeping the newest `max`.
local function incident_log(id, entry, max)
  redis.call("rpush", k_incident_history(id), cjson.encode(entry))
  redis.call("ltrim", k_incident_history(id), -max, -1)
end

-- An incident as the listing and the detail answer it: {HGETALL, newest `shown` traces, tasks, workers,
-- trace count, task count}. The counts are the hash's (every trace and task ever counted, while the sets keep the
-- newest incidents.MAX_MEMBERS); an incident recorded before those counters existed answers its sets' sizes.
local function incident_row(id, shown)
  return {redis.call("hgetall", k_incident(id)),
    redis.call("zrevrange", k_incident_traces(id), 0, shown - 1),
    redis.call("zrevrange", k_incident_tasks(id), 0, shown - 1),
    redis.call("zrevrange", k_incident_workers(id), 0, -1),
    redis.call("hget", k_incident(id), "trace_count") or redis.call("zcard", k_incident_traces(id)),
    redis.call("hget", k_incident(id), "task_count") or redis.call("zcard", k_incident_tasks(id))}
end

-- RFC 3339 UTC with milliseconds from epoch milliseconds (as engine.models.iso_ms; days to civil date after
-- Howard Hinnant's algorithm, since Redis's Lua has no os.date).
local function iso_ms(ms)
  ms = tonumber(ms)
  local secs = math.floor(ms / 1000)
  local days = math.floor(secs / 86400)
  local rem = secs - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return string.format("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", y, m, d, math.floor(rem / 3600),
    math.floor(rem % 3600 / 60), rem % 60, ms - secs * 1000)
end

-- A task ended without its worker ending its trace (worker lost, expired, cancelled, or the worker could not
-- write it): end the trace as the task ended, with a session_end saying so. Nothing when no trace runs.
local function close_trace(id, status, reason, now)
  local tkey = k_trace(id)
  local f = redis.call("hmget", tkey, "status", "project", "agent", "seq", "last_seq", "created_at")
  if f[1] ~= "running" then
    return
  end
  local sid = string.format("%d", (tonumber(f[5]) or 0) + 1)
  local payload = {status = status, closed_by = "taskyard"}
  if reason and reason ~= "" and status ~= "completed" then
    payload.error = reason
  end
  local data = cjson.encode({type = "session_end", timestamp = iso_ms(now), payload = payload})
  redis.call("xadd", k_trace_events(id), sid .. "-0", "d", data)
  redis.call("hset", tkey, "status", status, "last_seq", sid, "updated_at", now, "ended_at", now,
    "duration_ms", string.format("%d", tonumber(now) - (tonumber(f[6]) or tonumber(now))))
  redis.call("hincrby", tkey, "events", 1)
  trace_unindex(f[2], id, f[3] or "", "running")
  trace_index(f[2], id, f[3] or "", status, f[4])
  enqueue_job("analyze_trace", {id}, now)
end


-- Give a task its final state: out of the worker's depth, its running set and its process's set. A task
-- made by a webhook event also queues the engine job that moves the event along and writes results back; a
-- completed or failed task of a project with a task alert subscription queues `task_event` (one EXISTS).
local function finalize(id, new_state, now, field, text)
  local t = k_task(id)
  local f = redis.call("hmget", t, "state", "project", "worker_name", "seq", "owner", "event_id")
  local old, project, worker, seq, owner = f[1], f[2], f[3], f[4], f[5]
  if f[6] then
    enqueue_job("task_finished", {id}, now)
  end
  if (new_state == "completed" or new_state == "failed") and redis.call("exists", k_hooks_task(project)) == 1 then
    enqueue_job("task_event", {id}, now)  -- task.completed / task.failed alerts (engine/alerts.py)
  end
  move_state(id, project, worker, seq, old, new_state)
  redis.call("hset", t, "completed_at", now)
  if field then
    redis.call("hset", t, field, text)
  end
  redis.call("hdel", t, "not_before")
  redis.call("zrem", k_worker_active(worker), id)
  redis.call("srem", k_worker_running(worker), id)
  if owner then
    redis.call("srem", k_proc_tasks(owner), id)
  end
  redis.call("zrem", k_delayed(), id)
  redis.call("hincrby", k_metrics(), "tasks_" .. new_state, 1)
  close_trace(id, new_state, text, now)
end

-- Put a pending task back on its worker's queue, or fail it when the worker was removed meanwhile (nothing
-- would ever consume its queue). Returns true when enqueued.
local function requeue(worker, id, now)
  if redis.call("exists", k_worker_def(worker)) == 0 then
    finalize(id, "failed", now, "error", "worker removed")
    return false
  end
  enqueue(worker, id, now)
  return true
end

-- Take a dispatched task back from its process and queue it again (its process died or gave it back).
local function release(id, worker, owner, now)
  local t = k_task(id)
  local f = redis.call("hmget", t, "project", "seq")
  move_state(id, f[1], worker, f[2], "dispatched", "pending")
  redis.call("hdel", t, "owner")
  redis.call("srem", k_worker_running(worker), id)
  if owner then
    redis.call("srem", k_proc_tasks(owner), id)
  end
end

-- Claim a task for a process: move it to `dispatched` unless that would run it twice.
-- `buckets` are the dispatch-latency histogram bounds (ms). Returns {"run", <HGETALL>} | {"skip", reason}.
local function claim_task(id, proc, now, max_lost, buckets)
  local t = k_task(id)
  local f = redis.call("hmget", t, "state", "owner", "not_before", "worker_name", "project", "seq")
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
  if redis.call("hexists", t, "cancel_requested") == 1 then
    -- Cancelled while its run was being handed back (a stopping or dead process): do not start it again.
    finalize(id, "cancelled", now, "error", "cancelled")
    return {"skip", "cancelled"}
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
    for _, bound in ipairs(buckets) do
      if latency <= tonumber(bound) then
        redis.call("hincrby", h, bound, 1)
      end
    end
    redis.call("hincrby", h, "+Inf", 1)
    redis.call("hincrbyfloat", h, "sum_ms", latency)
  end
  return {"run", redis.call("hgetall", t)}
end

-- Choose a worker among candidates read from ARGV at `first` (`n` entries of `stride` values: name, bound,
-- ...), starting from the group's round-robin cursor when `group` is set. A candidate is skipped when its
-- definition is gone, when it is offline (if `require_online`) or when its depth is at its bound.
-- The cursor is the position after the last candidate chosen (not a count of calls), so the turns of a skipped
-- candidate are spread over the others: with one of four offline, each of the other three gets a third, where
-- a counter would hand every skipped turn to the next in line (half the traffic on one worker).
-- Returns chosen name (or nil), the ARGV index of its entry, the candidate names, the skipped list.
local function choose(first, n, stride, group, require_online, online_since, skipped)
  local start = 0
  if group ~= "" and n > 0 then
    start = (tonumber(redis.call("get", k_rr(group))) or 0) % n
  end
  local names, chosen, chosen_at = {}, nil, nil
  for i = 0, n - 1 do
    local pos = (start + i) % n
    local at = first + stride * pos
    local name, bound = ARGV[at], tonumber(ARGV[at + 1])
    table.insert(names, name)
    if not chosen then
      if redis.call("exists", k_worker_def(name)) == 0 then
        table.insert(skipped, {worker = name, reason = "removed"})
      elseif require_online and redis.call("zcount", k_worker_procs(name), online_since, "+inf") == 0 then
        table.insert(skipped, {worker = name, reason = "offline"})
      elseif require_online and redis.call("exists", k_worker_error(name)) == 1 then
        table.insert(skipped, {worker = name, reason = "error"})
      else
        local depth = redis.call("zcard", k_worker_active(name))
        if depth >= bound then
          table.insert(skipped, {worker = name, reason = "full", depth = depth, bound = bound})
        else
          chosen, chosen_at = name, at
          if group ~= "" then
            redis.call("set", k_rr(group), (pos + 1) % n)
          end
        end
      end
    end
  end
  return chosen, chosen_at, names, skipped
end

-- Move an event between states, keeping its state indexes exact and appending to its history.
local function move_event(id, project, source, seq, old, new, now, detail)
  local e = k_event(id)
  redis.call("zrem", k_ev_state(project, old), id)
  redis.call("zrem", k_ev_source_state(project, source, old), id)
  redis.call("zadd", k_ev_state(project, new), seq, id)
  redis.call("zadd", k_ev_source_state(project, source, new), seq, id)
  redis.call("hset", e, "state", new, "updated_at", now)
  if new == "received" or new == "dispatched" then
    redis.call("zadd", k_ev_open(), now, id)  -- still owes work: the sweep looks at it if it stays too long
  else
    redis.call("zrem", k_ev_open(), id)
  end
  local entry = {state = new, detail = detail}
  redis.call("rpush", k_event_history(id), string.sub(cjson.encode(entry), 1, -2) .. ',"at":' .. now .. '}')
  redis.call("hincrby", k_metrics(), "events_" .. new, 1)
  activity(project, "event", id, new, source)
end

-- A dispatched event whose tasks are all final (and with no dispatch waiting on a concurrency key) becomes
-- completed (every task completed), write_back_failed (every task completed but a write-back failed for
-- good: wb_failed), or failed (a task did not complete or a rule was refused). Returns the state afterwards.
local function follow_event(id, now)
  local e = k_event(id)
  local f = redis.call("hmget", e, "state", "project", "source", "seq", "matches", "wb_failed")
  if f[1] ~= "dispatched" then
    return f[1]
  end
  local failed = {}
  for _, m in ipairs(cjson.decode(f[5] or "[]")) do
    local task = m.task_id
    if m.status == "queued" then
      -- Its admission may have happened with the record of it lost (a crash): its task then speaks for it.
      if type(m.pending_task) ~= "string" or redis.call("exists", k_task(m.pending_task)) == 0 then
        return "dispatched"
      end
      task = m.pending_task
    end
    if m.status == "refused" then
      table.insert(failed, "rule " .. tostring(m.rule) .. " refused: " .. tostring(m.reason))
    end
    if type(task) == "string" then
      local state = redis.call("hget", k_task(task), "state")
      if state and not FINAL[state] then
        return "dispatched"
      end
      if state ~= "completed" then
        table.insert(failed, "task " .. task .. " " .. tostring(state or "missing"))
      end
    end
  end
  if #failed == 0 and f[6] then
    redis.call("hset", e, "error", f[6])
    move_event(id, f[2], f[3], f[4], "dispatched", "write_back_failed", now, f[6])
    return "write_back_failed"
  end
  if #failed == 0 then
    move_event(id, f[2], f[3], f[4], "dispatched", "completed", now, "all tasks completed")
    return "completed"
  end
  local reason = table.concat(failed, "; ")
  redis.call("hset", e, "error", reason)
  move_event(id, f[2], f[3], f[4], "dispatched", "failed", now, reason)
  return "failed"
end

-- Merge what queued dispatches recorded while the event's matches were not stored yet (event_match.lua) into
-- its matches: each entry replaces its rule's "queued" match.
local function merge_deferred(id)
  local side = k_event_deferred(id)
  local flat = redis.call("hgetall", side)
  if #flat == 0 then
    return
  end
  local raw = redis.call("hget", k_event(id), "matches")
  if not raw then
    return
  end
  local matches = cjson.decode(raw)
  for i = 1, #flat, 2 do
    local entry = cjson.decode(flat[i + 1])
    for _, m in ipairs(matches) do
      if m.rule == flat[i] and m.status == "queued" then
        m.reason, m.key, m.pending_task = nil, nil, nil  -- what it waited for no longer applies
        for k, v in pairs(entry) do
          m[k] = v
        end
      end
    end
  end
  redis.call("hset", k_event(id), "matches", cjson.encode(matches))
  redis.call("del", side)
end


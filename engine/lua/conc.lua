-- conc(op, key, wait_key, task_id, mode, entry_json, claim_ttl_ms, now_ms, prompt)
-- A rule's concurrency key: the task holding it, and the dispatches waiting for it (a list of JSON entries
-- {event, rule, value, task}; their prompts in the hash <key>:prompts). One step per decision, so racing events
-- never both take the key, and whenever the key is found free with dispatches waiting, the first gets it (a
-- "handoff": the caller admits it). The key's value is "<task>@<claim ms>" while the task is being admitted,
-- "<task>" once confirmed. A holder is live while its task is not final, or, before its task exists, while its
-- claim is younger than claim_ttl_ms (a crash between claim and admission frees the key then; a crash between
-- admission and confirm does not, since the task exists). An entry leaves the list only when its admission is
-- confirmed or abandoned, so a crash at any point leaves it to be handed off again.
-- claim:   for task_id (entry_json its waiting entry, prompt its prompt). The key already its own: {"claimed"}.
--          A live holder: mode skip -> {"busy", holder}; queue -> listed (keeping its place if listed before),
--          {"queued", holder}; cancel_running -> {"replaced", holder} (the caller cancels it). A free key with
--          others waiting: the newcomer is listed (or busy, for skip), {"queued"|"busy", "", handoff}. A free
--          key and no waiters: {"claimed"}.
-- confirm: the admission of task_id succeeded: the entry leaves the list, the key is held for good ({"ok"}),
--          or, when the task is already over (a duplicate admission), handed on ({"handoff", e} | {"ok"}).
--          {"lost"} when the key passed to a newer task meanwhile (cancel_running).
-- abandon: task_id will not be admitted: the entry leaves the list; a free key is handed on.
-- release: task_id finished (or "" to poke): a key without a live holder is handed on.
-- defer:   a handed-off admission of task_id was refused for now: free the key, keep the entry first in line.
-- Answers of abandon/release: {"handoff", entry} | {"free"} | {"kept"}; handoff entries carry their prompt.
local op, key, wait, id, mode, entry = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local ttl, now, prompt = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]
local prompts = key .. ":prompts"

local function holder_of(value)
  local at = string.find(value, "@", 1, true)
  if at then
    return string.sub(value, 1, at - 1), tonumber(string.sub(value, at + 1))
  end
  return value, nil
end

local function live_holder()
  local value = redis.call("get", key)
  if not value then
    return nil
  end
  local holder, claimed = holder_of(value)
  local state = redis.call("hget", k_task(holder), "state")
  if state then
    if FINAL[state] then
      return nil
    end
    return holder
  end
  if claimed and now - claimed < ttl then
    return holder
  end
  return nil
end

-- The key is free: give it to the first waiter, if any. Returns its entry (with its prompt) or nil.
local function hand_off()
  local head = redis.call("lindex", wait, 0)
  if not head then
    redis.call("del", key)
    return nil
  end
  local e = cjson.decode(head)
  redis.call("set", key, e.task .. "@" .. now)
  e.prompt = redis.call("hget", prompts, e.task) or ""
  return cjson.encode(e)
end

local function listed()
  if not redis.call("lpos", wait, entry) then
    redis.call("rpush", wait, entry)
  end
  redis.call("hset", prompts, id, prompt)
end

local function answer(head)
  if head then
    return {"handoff", head}
  end
  return {"free"}
end

if op == "claim" then
  local holder = live_holder()
  if holder == id then
    return {"claimed"}
  end
  if holder then
    if mode == "skip" then
      return {"busy", holder}
    elseif mode == "queue" then
      listed()
      return {"queued", holder}
    end
    redis.call("set", key, id .. "@" .. now)
    return {"replaced", holder}
  end
  local head = redis.call("lindex", wait, 0)
  if head and head ~= entry then
    local status = "busy"
    if mode ~= "skip" then
      listed()
      status = "queued"
    end
    return {status, "", hand_off()}
  end
  redis.call("set", key, id .. "@" .. now)
  return {"claimed"}
elseif op == "confirm" then
  redis.call("lrem", wait, 0, entry)
  redis.call("hdel", prompts, id)
  local value = redis.call("get", key)
  if not value or holder_of(value) ~= id then
    return {"lost"}
  end
  local state = redis.call("hget", k_task(id), "state")
  if state and FINAL[state] then
    local head = hand_off()
    if head then
      return {"handoff", head}
    end
    return {"ok"}
  end
  redis.call("set", key, id)
  return {"ok"}
elseif op == "defer" then
  local value = redis.call("get", key)
  if value and holder_of(value) == id then
    redis.call("del", key)
  end
  return {"ok"}
elseif op == "abandon" or op == "release" then
  if op == "abandon" then
    redis.call("lrem", wait, 0, entry)
    redis.call("hdel", prompts, id)
  end
  local holder = live_holder()
  if holder and holder ~= id then
    return {"kept"}
  end
  return answer(hand_off())
end
return redis.error_reply("unknown conc op " .. tostring(op))

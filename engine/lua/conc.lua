-- conc(op, key, wait_key, task_id, mode, entry_json, claim_ttl_ms)
-- A rule's concurrency key: the task holding it, and the dispatches waiting for it (a list of JSON entries, each
-- with the task id its dispatch will admit). One step per decision, so racing events never both take the key,
-- and whenever the key is free with dispatches waiting, the first of them gets it ("handoff"): the caller
-- admits that dispatch. A claim expires after claim_ttl_ms unless confirmed, so a crash between a claim and its
-- admission frees the key; the waiter stays listed until its admission is confirmed, so it is handed off again.
-- claim:   for task_id (entry_json is its waiting entry). A live holder: mode skip -> {"busy", holder};
--          queue -> listed, {"queued", holder}; cancel_running -> {"replaced", holder} (the caller cancels it).
--          A free key with waiters: the newcomer is listed (or busy, for skip) and the first waiter gets the
--          key: {"queued"|"busy", "", handoff_entry}. A free key and no waiters: {"claimed"}.
-- confirm: the admission of task_id succeeded: its claim no longer expires and its entry leaves the list.
--          {"lost"} when the key passed to a newer task meanwhile (cancel_running).
-- abandon: the admission of task_id will not happen: drop its claim and entry; {"handoff", entry} | {"free"}.
-- release: task_id finished: free the key if it holds it; {"handoff", entry} | {"free"} | {"kept"}. With an
--          empty task_id, a poke: hands a free key (an expired claim, a lost release) to the first waiter.
-- defer:   the handed-off admission of task_id was refused for now (queue full, no worker online): free the
--          key and leave the entry first in line, for the next release, claim or poke.
local op, key, wait, id, mode, entry, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]

local function live_holder()
  local holder = redis.call("get", key)
  if not holder then
    return nil
  end
  local state = redis.call("hget", k_task(holder), "state")
  if state then
    if FINAL[state] then
      return nil
    end
    return holder
  end
  if redis.call("pttl", key) > 0 then  -- claimed, its task not admitted yet
    return holder
  end
  return nil
end

-- The key is free: give it to the first waiter, if any. Returns its entry or nil.
local function hand_off()
  local head = redis.call("lindex", wait, 0)
  if not head then
    redis.call("del", key)
    return nil
  end
  redis.call("set", key, cjson.decode(head).task, "PX", ttl)
  return head
end

if op == "claim" then
  local holder = live_holder()
  if holder == id then  -- handed to this very dispatch already (its own retry, or a handoff that ran first)
    return {"claimed"}
  end
  if holder then
    if mode == "skip" then
      return {"busy", holder}
    elseif mode == "queue" then
      redis.call("lrem", wait, 0, entry)  -- a retried dispatch is listed once
      redis.call("rpush", wait, entry)
      return {"queued", holder}
    end
    redis.call("set", key, id, "PX", ttl)
    return {"replaced", holder}
  end
  local head = redis.call("lindex", wait, 0)
  if head and head ~= entry then
    local status = "busy"
    if mode ~= "skip" then
      redis.call("lrem", wait, 0, entry)
      redis.call("rpush", wait, entry)
      status = "queued"
    end
    return {status, "", hand_off()}
  end
  redis.call("set", key, id, "PX", ttl)
  return {"claimed"}
elseif op == "confirm" then
  redis.call("lrem", wait, 0, entry)
  if redis.call("get", key) ~= id then
    return {"lost"}
  end
  redis.call("persist", key)
  return {"ok"}
elseif op == "defer" then
  if redis.call("get", key) == id then
    redis.call("del", key)
  end
  return {"ok"}
elseif op == "abandon" or op == "release" then
  if op == "abandon" then
    redis.call("lrem", wait, 0, entry)
  end
  local holder = redis.call("get", key)
  if holder and holder ~= id and live_holder() then
    return {"kept"}
  end
  local head = hand_off()
  if head then
    return {"handoff", head}
  end
  return {"free"}
end
return redis.error_reply("unknown conc op " .. tostring(op))

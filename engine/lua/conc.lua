-- conc(op, key, wait_key, task_id, mode, waiting_json, claim_ttl_ms)
-- A rule's concurrency key: which task holds it, and the dispatches waiting for it. One step per decision, so
-- two events racing for one key cannot both take it.
-- claim:   for task_id, about to be admitted. When a live task holds the key, `mode` decides: skip ->
--          {"busy", holder}; queue -> waiting_json goes on the wait list, {"queued", holder}; cancel_running ->
--          the key passes to task_id, {"replaced", holder} (the caller cancels the holder). A free key ->
--          {"claimed"}. A claim expires after claim_ttl_ms unless confirmed, so a crash between the claim and
--          the admission frees it; a holder with no task record yet is live while its claim lasts.
-- confirm: the admission succeeded: the claim no longer expires. {"lost"} when the key passed to another task.
-- abandon: the admission was refused: free the key if task_id still holds it.
-- release: task_id finished: free the key if it still holds it and answer the next waiting dispatch.
local op, key, wait, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if op == "claim" then
  local holder = redis.call("get", key)
  local live = false
  if holder then
    local state = redis.call("hget", k_task(holder), "state")
    if state then
      live = not FINAL[state]
    else
      live = redis.call("pttl", key) > 0
    end
  end
  if live then
    if ARGV[5] == "skip" then
      return {"busy", holder}
    elseif ARGV[5] == "queue" then
      redis.call("rpush", wait, ARGV[6])
      return {"queued", holder}
    end
    redis.call("set", key, id, "PX", ARGV[7])
    return {"replaced", holder}
  end
  redis.call("set", key, id, "PX", ARGV[7])
  return {"claimed"}
elseif op == "confirm" then
  if redis.call("get", key) ~= id then
    return {"lost"}
  end
  redis.call("persist", key)
  return {"ok"}
elseif op == "abandon" then
  if redis.call("get", key) == id then
    redis.call("del", key)
  end
  return {"ok"}
elseif op == "release" then
  if redis.call("get", key) ~= id then
    return {"kept"}
  end
  redis.call("del", key)
  local nxt = redis.call("lpop", wait)
  if nxt then
    return {"next", nxt}
  end
  return {"free"}
end
return redis.error_reply("unknown conc op " .. tostring(op))

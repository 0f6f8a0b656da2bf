-- event_match(event_id, rule_id, entry_json, now_ms)
-- A dispatch that waited on a concurrency key has run (or been refused): record it on the event's match of
-- that rule, if the match still says "queued", then follow the event (it may be over now). When the event's
-- matches are not stored yet (its processing job is still running), the entry waits in a side hash that the
-- job's final update merges (merge_deferred). Returns the event's state, "deferred" or "missing".
local id, rule, entry, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local e = k_event(id)
local state = redis.call("hget", e, "state")
if not state then
  return "missing"
end
if state == "received" then
  redis.call("hset", k_event_deferred(id), rule, entry)
  return "deferred"
end
redis.call("hset", k_event_deferred(id), rule, entry)
merge_deferred(id)
return follow_event(id, now)

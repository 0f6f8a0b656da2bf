-- event_receive(event_id, project, source, delivery_id, now_ms, audit_detail, audit_max, dedupe_ttl_ms,
--               [field, value] * rest)
-- Stores a webhook event and queues its processing job, unless its delivery id was seen before: the delivery
-- key is set in the same step, so two copies arriving at once on two replicas make one event. The audit
-- entry (event_received or event_duplicate, detail already redacted) is written in the same step too.
-- Returns {"ok", seq} | {"dup", event_id}
local id, project, source, delivery, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local audit_detail, audit_max, dedupe_ttl = ARGV[6], ARGV[7], ARGV[8]
if delivery ~= "" then
  local existing = redis.call("get", k_delivery(project, source, delivery))
  if existing then
    redis.call("xadd", k_audit(), "MAXLEN", "~", audit_max, "*", "action", "event_duplicate", "project", project, "event", existing,
               "task", "", "detail", audit_detail)
    return {"dup", existing}
  end
  redis.call("set", k_delivery(project, source, delivery), id, "PX", dedupe_ttl)
end
local seq = redis.call("incr", k_event_seq())
local fields = {"id", id, "project", project, "source", source, "state", "received", "delivery_id", delivery,
                "created_at", now, "updated_at", now, "seq", seq}
for i = 9, #ARGV do
  table.insert(fields, ARGV[i])
end
redis.call("hset", k_event(id), unpack(fields))
redis.call("zadd", k_ev_all(project), seq, id)
redis.call("zadd", k_ev_open(), now, id)
redis.call("sadd", k_projects(), project)  -- the retention sweep's list of projects
redis.call("zadd", k_ev_state(project, "received"), seq, id)
redis.call("zadd", k_ev_source(project, source), seq, id)
redis.call("zadd", k_ev_source_state(project, source, "received"), seq, id)
redis.call("rpush", k_event_history(id), '{"state":"received","at":' .. now .. '}')
redis.call("hincrby", k_metrics(), "events_received", 1)
activity(project, "event", id, "received", source)
redis.call("xadd", k_audit(), "MAXLEN", "~", audit_max, "*", "action", "event_received", "project", project, "event", id, "task", "",
           "detail", audit_detail)
enqueue_job("process_event", {id}, now)
return {"ok", seq}

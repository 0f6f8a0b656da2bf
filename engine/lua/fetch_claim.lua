-- fetch_claim(worker, broker_id, proc_id, now_ms, max_lost, room, bucket_1, ..., bucket_n)
-- Dramatiq's "fetch" (dramatiq 2.2.1 dispatch.lua: heartbeat, LPOP up to `room` ids, SADD each to the
-- consumer's ack set, HGET the messages) fused with the claim of each message's task, in one round trip.
-- A message whose task must not run (finished, running elsewhere, early) is acked here and not returned.
-- Returns {message_data, claim} pairs flattened: {data_1, {"run", <HGETALL>}, data_2, ...}
local worker, broker, proc = ARGV[1], ARGV[2], ARGV[3]
local now, max_lost, room = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local buckets = {}
for i = 7, #ARGV do
  table.insert(buckets, ARGV[i])
end
local queue, msgs, acks = k_dq_queue(worker), k_dq_msgs(worker), k_dq_acks(broker, worker)
redis.call("zadd", k_dq_heartbeats(), now, broker)

local out = {}
local fetched = 0
while fetched < room do
  local mid = redis.call("lpop", queue)
  if not mid then
    break
  end
  local data = redis.call("hget", msgs, mid)
  if data then
    local ok, message = pcall(cjson.decode, data)
    local task_id = ok and type(message) == "table" and type(message.args) == "table" and message.args[1]
    local claim = task_id and claim_task(task_id, proc, now, max_lost, buckets) or {"skip", "malformed"}
    if claim[1] == "run" then
      redis.call("sadd", acks, mid)
      table.insert(out, data)
      table.insert(out, claim)
      fetched = fetched + 1
    else
      redis.call("hdel", msgs, mid)
    end
  end
end
return out

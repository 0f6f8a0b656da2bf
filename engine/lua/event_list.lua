-- event_list(index_key, below_seq, limit)
-- Newest first from one event index, strictly below the cursor seq ("+inf" for the first page); as
-- list_tasks: {{HGETALL event (without its raw payload), ...}, last_seq_scanned, n_scanned}.
local index, below, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local max = below == "+inf" and "+inf" or "(" .. below
local ids = redis.call("zrevrangebyscore", index, max, "-inf", "WITHSCORES", "LIMIT", 0, limit)
local out, last = {}, ""
local FIELDS = {"id", "project", "source", "type", "state", "actor", "subject", "attrs", "created_at",
                "updated_at", "seq", "delivery_id", "matches", "error", "replay_of"}
for i = 1, #ids, 2 do
  local values = redis.call("hmget", k_event(ids[i]), unpack(FIELDS))
  if values[1] then
    local h = {}
    for j, name in ipairs(FIELDS) do
      if values[j] then
        table.insert(h, name)
        table.insert(h, values[j])
      end
    end
    table.insert(out, h)
  end
  last = ids[i + 1]
end
return {out, last, #ids / 2}

-- list_tasks(index_key, below_seq, limit)
-- Newest first from one index zset, strictly below the cursor seq ("+inf" for the first page).
-- Returns {HGETALL task, ...}
local index, below, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local max = below == "+inf" and "+inf" or "(" .. below
local ids = redis.call("zrevrangebyscore", index, max, "-inf", "LIMIT", 0, limit)
local out = {}
for _, id in ipairs(ids) do
  local h = redis.call("hgetall", k_task(id))
  if #h > 0 then
    table.insert(out, h)
  end
end
return out

-- trace_list(index_key, below_seq, limit)
-- Newest first from one trace index, strictly below the cursor seq ("+inf" for the first page):
-- {{HGETALL trace, ...}, last_seq_scanned, n_scanned}.
local index, below, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local max = below == "+inf" and "+inf" or "(" .. below
local ids = redis.call("zrevrangebyscore", index, max, "-inf", "WITHSCORES", "LIMIT", 0, limit)
local out, last = {}, ""
for i = 1, #ids, 2 do
  local h = redis.call("hgetall", k_trace(ids[i]))
  if #h > 0 then table.insert(out, h) end
  last = ids[i + 1]
end
return {out, last, #ids / 2}

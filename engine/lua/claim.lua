-- claim(task_id, proc_id, now_ms, max_lost, bucket_1, ..., bucket_n)
-- Claim one task by id (the worker runtime claims at fetch time with fetch_claim; this serves tools and tests).
-- Returns {"run", <HGETALL of the task>} | {"skip", reason}
local buckets = {}
for i = 5, #ARGV do
  table.insert(buckets, ARGV[i])
end
return claim_task(ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), buckets)

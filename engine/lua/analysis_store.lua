-- analysis_store(trace_id, analysis_json, ended, cost_entry, costs_key, costs_kept)
-- Stores a trace's analysis. An analysis made while the trace still ran (ended "0": a live scan, or one on
-- demand) never replaces one made after it ended. cost_entry ("<trace id> <usd>", or ""): the completed
-- run joins its worker's recent costs once (cost_sampled on the trace), newest first, costs_kept at most.
-- -> 1 when stored, 0 when a settled analysis was kept.
local id, analysis, ended, cost_entry = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = k_trace_analysis(id)
if ended ~= "1" then
  local stored = redis.call("get", key)
  if stored and cjson.decode(stored).trace_ended then
    return 0
  end
end
redis.call("set", key, analysis)
if cost_entry ~= "" and redis.call("exists", k_trace(id)) == 1
    and redis.call("hsetnx", k_trace(id), "cost_sampled", "1") == 1 then
  redis.call("lpush", ARGV[5], cost_entry)
  redis.call("ltrim", ARGV[5], 0, tonumber(ARGV[6]) - 1)
end
return 1

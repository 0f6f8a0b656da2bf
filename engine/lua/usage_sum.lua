-- usage_sum(project, field, high, low, count)
-- Sums one project's usage records (stream k_usage) newest first, from stream id `high` down to `low` (XREVRANGE
-- bounds: "+", "-", "<ms>", "(<id>" for exclusive), reading at most `count` entries, per value of `field`
-- (agent, model or worker; a record without it counts under ""). Read-only; the caller pages with "(<last id>".
-- Answer: {entries read, last id read ("" when none), then per group:
--          value, records, unpriced records, tokens_in, tokens_out, cost_usd}
-- Every number goes back as a string: a Lua number would come back as an integer, cutting off the cents.
local project, field, high, low, count = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local entries = redis.call("xrevrange", k_usage(project), high, low, "COUNT", count)
local groups, order = {}, {}
for _, entry in ipairs(entries) do
  local f = entry[2]
  local value, tin, tout, cost, priced = "", 0, 0, 0, "1"
  for i = 1, #f, 2 do
    local name, v = f[i], f[i + 1]
    if name == field then value = v
    elseif name == "tokens_in" then tin = tonumber(v) or 0
    elseif name == "tokens_out" then tout = tonumber(v) or 0
    elseif name == "cost_usd" then cost = tonumber(v) or 0
    elseif name == "priced" then priced = v
    end
  end
  local g = groups[value]
  if not g then
    g = {0, 0, 0, 0, 0}
    groups[value] = g
    order[#order + 1] = value
  end
  g[1] = g[1] + 1
  if priced == "0" then g[2] = g[2] + 1 end
  g[3] = g[3] + tin
  g[4] = g[4] + tout
  g[5] = g[5] + cost
end
local out = {string.format("%d", #entries), #entries > 0 and entries[#entries][1] or ""}
for _, value in ipairs(order) do
  local g = groups[value]
  out[#out + 1] = value
  out[#out + 1] = string.format("%d", g[1])
  out[#out + 1] = string.format("%d", g[2])
  out[#out + 1] = string.format("%.0f", g[3])
  out[#out + 1] = string.format("%.0f", g[4])
  out[#out + 1] = string.format("%.17g", g[5])
end
return out

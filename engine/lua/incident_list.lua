-- incident_list(project, status, class, worker, below_seq, limit, scan_budget, shown)   ("" = no filter)
-- Newest activity first, strictly below the cursor seq ("+inf" for the first page). Every incident sits in
-- the all / status / class / worker indexes under the same score, so the page is read from the smallest index
-- a filter names and the other filters are checked per incident. A page stops at `limit` matches or after
-- `scan_budget` examined incidents, whichever comes first (a filtered page may then be short, or even empty,
-- with a cursor to go on from).
-- -> {{row (see incident_row), ...}, cursor seq ("" = nothing further)}
local project, status, cls, worker = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local below, limit, budget, shown = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local CHUNK = 100  -- incidents read per ZREVRANGEBYSCORE while filtering

local index, filters = k_inc_all(project), 0
local best
for _, key in ipairs({status ~= "" and k_inc_status(project, status) or false,
                      cls ~= "" and k_inc_class(project, cls) or false,
                      worker ~= "" and k_inc_worker(project, worker) or false}) do
  if key then
    filters = filters + 1
    local n = redis.call("zcard", key)
    if not best or n < best then
      index, best = key, n
    end
  end
end

local function matches(id)
  if filters < 2 then
    return true  -- the index is the filter
  end
  local f = redis.call("hmget", k_incident(id), "status", "failure_class")
  return (status == "" or f[1] == status) and (cls == "" or f[2] == cls)
    and (worker == "" or redis.call("zscore", k_incident_workers(id), worker) ~= false)
end

local out, last, scanned, exhausted = {}, "", 0, false
local max = below == "+inf" and "+inf" or "(" .. below
while #out < limit and scanned < budget and not exhausted do
  local want = limit - #out
  if filters > 1 then
    want = math.max(want, CHUNK)
  end
  want = math.min(want, budget - scanned)
  local ids = redis.call("zrevrangebyscore", index, max, "-inf", "WITHSCORES", "LIMIT", 0, want)
  local i = 1
  while i <= #ids and #out < limit do
    scanned = scanned + 1
    last = ids[i + 1]
    if matches(ids[i]) then
      local row = incident_row(ids[i], shown)
      if #row[1] > 0 then  -- an index entry whose incident is gone is passed over
        table.insert(out, row)
      end
    end
    i = i + 2
  end
  exhausted = i > #ids and #ids / 2 < want
  max = "(" .. last
end
return {out, exhausted and "" or last}

-- scan_next(trace_id, guard_ms)
-- The next step of a running trace's live-scan chain: 1 when events arrived since the last scan (the chain goes
-- on, its guard kept), 0 when none did (the guard is dropped, so the next stored batch starts a new chain).
-- One step, so a batch can never fall between "nothing new" and "chain over".
local id = ARGV[1]
if redis.call("getdel", k_trace_scan_dirty(id)) then
  redis.call("pexpire", k_trace_scan(id), tonumber(ARGV[2]))
  return 1
end
redis.call("del", k_trace_scan(id))
return 0

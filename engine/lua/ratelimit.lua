-- ratelimit(now_us, cost, bucket_1, burst_1, per_second_1, bucket_2, burst_2, per_second_2, ...)
-- Token buckets checked together: the request passes only when every bucket holds `cost` tokens, and then takes
-- `cost` from each; a refused request takes nothing and writes nothing. A bucket (hash k_ratelimit(name):
-- tokens, ts = last refill in microseconds) starts full, gains per_second tokens a second up to burst, and its
-- key expires once it would be full again (an absent bucket is a full one). The time is the Redis server's
-- (TIME) so replicas with skewed clocks agree; now_us > 0 overrides it (tests of the arithmetic only). A clock
-- that steps back refills nothing until it catches up.
-- Answer: {allowed 1|0, limit, remaining, reset_ms, retry_after_ms, binding bucket index (1-based)}. The binding
-- bucket is the one that refused (the longest wait, if several did) or, when allowed, the one with the fewest
-- tokens left (ties: the one slowest to refill); its burst, whole tokens left and milliseconds until full are
-- limit, remaining and reset_ms. retry_after_ms is 0 when allowed.
local now = tonumber(ARGV[1])
if now <= 0 then
  local t = redis.call("time")
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local cost = tonumber(ARGV[2])

local buckets = {}
local allowed = true
for i = 3, #ARGV, 3 do
  local b = {key = k_ratelimit(ARGV[i]), burst = tonumber(ARGV[i + 1]), rate = tonumber(ARGV[i + 2]) / 1000000}
  local f = redis.call("hmget", b.key, "tokens", "ts")
  local tokens, ts = tonumber(f[1]), tonumber(f[2])
  if tokens == nil or ts == nil then
    tokens, ts = b.burst, now
  end
  if now > ts then
    tokens = tokens + (now - ts) * b.rate
    ts = now
  end
  b.tokens, b.ts = math.min(b.burst, tokens), ts
  b.wait = 0
  if b.tokens < cost then
    allowed = false
    b.wait = (cost - b.tokens) / b.rate
  end
  buckets[#buckets + 1] = b
end

for _, b in ipairs(buckets) do
  if allowed then
    b.tokens = b.tokens - cost
    local refill_us = (b.burst - b.tokens) / b.rate
    redis.call("hset", b.key, "tokens", string.format("%.17g", b.tokens), "ts", string.format("%d", b.ts))
    redis.call("pexpire", b.key, math.ceil(refill_us / 1000) + 1)
  end
  b.reset = (b.burst - b.tokens) / b.rate
end

local bind = 1
for i, b in ipairs(buckets) do
  local best = buckets[bind]
  if allowed then
    if b.tokens < best.tokens or (b.tokens == best.tokens and b.reset > best.reset) then
      bind = i
    end
  elseif b.wait > best.wait then
    bind = i
  end
end

local b = buckets[bind]
return {allowed and 1 or 0, b.burst, math.max(0, math.floor(b.tokens)), math.ceil(b.reset / 1000),
        math.ceil(b.wait / 1000), bind}

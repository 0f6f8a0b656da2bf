-- event_replay_number(event_id)
-- Numbers the next replay of a stored event (POST /api/events/{id}/replay): 1 for the first, counted on the event
-- itself as `replays`, so the counter goes with the event when retention deletes it. The existence check and the
-- increment are one step: an event deleted meanwhile answers 0 and leaves no stray record behind.
-- Returns the number, or 0 when the event does not exist.
local key = k_event(ARGV[1])
if redis.call("exists", key) == 0 then
  return 0
end
return redis.call("hincrby", key, "replays", 1)

--[[
  Takes a partition for a new coordinator term: bumps its epoch and returns everything the new
  term resumes from, in one atomic step, so no write of the previous term can land in between.

    Input:
      KEYS[1] epoch key     (integer; missing = 0)
      KEYS[2] ceiling key   (integer; highest token ceiling ever reserved; missing = 0)
      KEYS[3] snapshot key  (JSON of the core's snapshot; missing = none)
      KEYS[4] journal key   (list of JSON journal entries, oldest first)

    Output:
      { epoch, ceiling, snapshot, journal }
        epoch     the new epoch (integer)
        ceiling   the token ceiling as a decimal string ("0" when none)
        snapshot  the snapshot JSON, or nil when there is none
        journal   the journal entries (JSON strings), oldest first
]]
local epoch = redis.call("INCR", KEYS[1])
local ceiling = redis.call("GET", KEYS[2]) or "0"
local snapshot = redis.call("GET", KEYS[3])
local journal = redis.call("LRANGE", KEYS[4], 0, -1)
return { epoch, ceiling, snapshot, journal }

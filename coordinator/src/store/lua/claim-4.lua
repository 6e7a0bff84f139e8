--[[
  Takes a partition for a new coordinator term: bumps its epoch (to at least the wall-clock seed)
  and returns everything the new term resumes from, its token ceiling raised to at least the
  seed's, in one atomic step, so no write of the previous term can land in between.

    Input:
      KEYS[1] epoch key     (integer; missing = 0)
      KEYS[2] ceiling key   (integer; highest token ceiling ever reserved; missing = 0)
      KEYS[3] snapshot key  (JSON of the core's snapshot; missing = none)
      KEYS[4] journal key   (list of JSON journal entries, oldest first)
      ARGV[1] epoch seed    (decimal; the new epoch is at least this; "0" = none)
      ARGV[2] ceiling seed  (decimal; the ceiling becomes at least this; "0" = none)

    Output:
      { epoch, ceiling, snapshot, journal }
        epoch     the new epoch (integer)
        ceiling   the token ceiling as a decimal string ("0" when none)
        snapshot  the snapshot JSON, or nil when there is none
        journal   the journal entries (JSON strings), oldest first
]]
local epoch = redis.call("INCR", KEYS[1])
if epoch < tonumber(ARGV[1]) then
  redis.call("SET", KEYS[1], ARGV[1])
  epoch = tonumber(ARGV[1])
end
local ceiling = redis.call("GET", KEYS[2]) or "0"
-- Decimal strings in and out: a Lua number would print 1e15 as "1e+15".
if tonumber(ceiling) < tonumber(ARGV[2]) then
  redis.call("SET", KEYS[2], ARGV[2])
  ceiling = ARGV[2]
end
local snapshot = redis.call("GET", KEYS[3])
local journal = redis.call("LRANGE", KEYS[4], 0, -1)
return { epoch, ceiling, snapshot, journal }

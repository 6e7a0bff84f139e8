--[[
  Replaces a partition's snapshot and empties its journal (the snapshot includes every entry),
  if the caller's term is still current. The token ceiling is left alone: it only ever rises.

    Input:
      KEYS[1] epoch key
      KEYS[2] snapshot key
      KEYS[3] journal key

      ARGV[1] the caller's epoch (decimal string)
      ARGV[2] the snapshot (JSON)

    Output:
      1  replaced
      0  the epoch is stale (another coordinator claimed the partition): nothing was written
]]
if redis.call("GET", KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call("SET", KEYS[2], ARGV[2])
redis.call("DEL", KEYS[3])
return 1

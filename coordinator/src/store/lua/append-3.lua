--[[
  Appends one committed batch to a partition's journal, if the caller's term is still current,
  and raises the token ceiling when the batch reserved tokens. Entry and ceiling are written
  together or not at all: a batch is never half durable.

    Input:
      KEYS[1] epoch key
      KEYS[2] ceiling key
      KEYS[3] journal key

      ARGV[1] the caller's epoch (decimal string)
      ARGV[2] the journal entry (JSON)
      ARGV[3] the token ceiling the batch reserved (decimal string), or "" for none

    Output:
      1  appended
      0  the epoch is stale (another coordinator claimed the partition): nothing was written
]]
if redis.call("GET", KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call("RPUSH", KEYS[3], ARGV[2])
if ARGV[3] ~= "" then
  local current = tonumber(redis.call("GET", KEYS[2]) or "0")
  -- Compared as numbers but stored as the caller's string: Lua would print a large double as 1e+15.
  if tonumber(ARGV[3]) > current then
    redis.call("SET", KEYS[2], ARGV[3])
  end
end
return 1

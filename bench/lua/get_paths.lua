-- GET a rotating set of paths (one per line). Args: PATHS_FILE API_KEY
dofile("common.lua")
local paths
local i = 0

function init(args)
  paths = read_lines(args[1])
  wrk.headers["X-API-Key"] = args[2]
  i = math.random(#paths) - 1
end

function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end

-- POST a rotating set of JSON bodies. Args: BODIES_FILE [API_KEY]
dofile("common.lua")
local bodies
local i = 0

function init(args)
  bodies = read_lines(args[1])
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if args[2] then wrk.headers["X-API-Key"] = args[2] end
  i = math.random(#bodies) - 1
end

function request()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end

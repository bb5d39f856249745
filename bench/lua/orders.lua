-- POST /v1/orders with a unique Idempotency-Key per request. Args: BODIES_FILE API_KEY RUN_ID
dofile("common.lua")
local threads = 0
local bodies
local prefix
local counter = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end

function init(args)
  bodies = read_lines(args[1])
  prefix = args[3] .. "-" .. tostring(thread_no)
  wrk.method = "POST"
  wrk.path = "/v1/orders"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-API-Key"] = args[2]
end

function request()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = prefix .. "-" .. tostring(counter)
  return wrk.format(nil, nil, nil, bodies[counter % #bodies + 1])
end

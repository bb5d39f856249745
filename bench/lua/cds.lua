-- POST a CDS Hooks call, each with its own signed JWT (a jti is accepted once).
-- Args: TOKENS_FILE BODIES_FILE PATH
dofile("common.lua")
local threads = 0
local tokens
local bodies
local i = 0
local step = 1

function setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end

function init(args)
  tokens = read_lines(args[1])
  bodies = read_lines(args[2])
  wrk.method = "POST"
  wrk.path = args[3]
  wrk.headers["Content-Type"] = "application/json"
  -- thread k takes tokens k, k+n, k+2n, ... (n threads), so no two requests share one
  step = tonumber(args[4] or "2")
  i = (thread_no or 1) - step
end

function request()
  i = i + step
  wrk.headers["Authorization"] = "Bearer " .. tokens[(i - 1) % #tokens + 1]
  return wrk.format(nil, nil, nil, bodies[i % #bodies + 1])
end

-- wrk script for bench/serve.sh: POSTs the bodies of $BODIES (one JSON body per line), each
-- thread cycling through them from its own offset. Like a client that honours 429's
-- Retry-After, a connection told to retry waits that long before its next request.
local bodies = {}
for line in io.lines(os.getenv("BODIES")) do bodies[#bodies + 1] = line end
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("offset", counter * 7)
end

function init(args)
  i = offset or 0
end

request = function()
  i = i + 1
  local body = bodies[(i % #bodies) + 1]
  return wrk.format("POST", "/get_reward", {["Content-Type"] = "application/json"}, body)
end

local backoff = 0

function response(status, headers, body)
  if status == 429 then
    backoff = 1000 * tonumber(headers["retry-after"] or headers["Retry-After"] or "1")
  else
    backoff = 0
  end
end

function delay()
  return backoff
end

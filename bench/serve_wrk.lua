-- wrk script for bench/serve.sh: POSTs the bodies of $BODIES (one JSON body per line), each
-- connection cycling through them from its own offset; counts non-200 answers.
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

-- wrk script: each request sends one m.room.message with a unique txnId.
-- Env: MX_TOKEN (access token), MX_ROOMS (comma-separated room IDs; each
-- connection picks one by its thread/counter).
local token = os.getenv("MX_TOKEN")
local rooms = {}
for r in string.gmatch(os.getenv("MX_ROOMS") or "", "[^,]+") do rooms[#rooms + 1] = r end
local counter = 0
local threads_made = 0
tid = 0 -- global: thread:set() gives each thread its own value

function setup(thread)
  threads_made = threads_made + 1
  thread:set("tid", threads_made)
end

function request()
  counter = counter + 1
  local room = rooms[(counter % #rooms) + 1]
  local path = "/_matrix/client/v3/rooms/" .. room .. "/send/m.room.message/b" .. tid .. "_" .. counter .. "_" .. math.random(1, 1e9)
  return wrk.format("PUT", path, { ["Authorization"] = "Bearer " .. token,
                                   ["Content-Type"] = "application/json" },
                    '{"msgtype":"m.text","body":"bench message ' .. counter .. '"}')
end

function response(status, headers, body)
  if status ~= 200 then io.stderr:write("send failed: " .. status .. " " .. body .. "\n") end
end

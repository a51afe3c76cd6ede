-- wrk script for the collector fault test: a mix of benign and
-- attack-looking requests, each with a distinct query, and a stop after a
-- given number of responses.
--
-- Usage: wrk -t1 -c16 -d300s -s fault_load.lua URL -- LIMIT TAG DONE_FILE
-- LIMIT is the number of responses after which the thread stops and writes
-- DONE_FILE. wrk itself runs until -d ends, so the caller watches for
-- DONE_FILE and stops wrk with SIGINT. Requests still in flight on other
-- connections when the thread stops were sent anyway, so the probe may
-- record up to (connections - 1) requests more than LIMIT. Run with one
-- thread: every thread would count its own LIMIT.

local requests_made = 0
local responses = 0
local limit = 0
local tag = "load"
local done_file = nil

local benign = {
  "/",
  "/index.php",
  "/about.html",
  "/images/logo.png",
  "/robots.txt",
  "/favicon.ico",
  "/blog/2024/01/hello-world",
  "/search?q=shoes",
}

local attacks = {
  "/index.php?id=1%27%20OR%20%271%27%3D%271",
  "/cgi-bin/.%2e/.%2e/.%2e/etc/passwd",
  "/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
  "/.env",
  "/wp-login.php",
  "/index.php?page=../../../../etc/passwd",
  "/shell.php?cmd=cat%20/etc/passwd",
}

function init(args)
  limit = tonumber(args[1]) or 0
  tag = args[2] or tag
  done_file = args[3]
end

function request()
  requests_made = requests_made + 1
  local n = requests_made
  -- Every third request looks like an attack; every tenth one is a POST.
  if n % 10 == 0 then
    local body = "log=admin&pwd=guess" .. n .. "&wp-submit=Log+In"
    return wrk.format("POST", "/wp-login.php?" .. tag .. "=" .. n, {
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["User-Agent"] = "fault-test/" .. tag,
    }, body)
  end
  local path
  if n % 3 == 0 then
    path = attacks[(n % #attacks) + 1]
  else
    path = benign[(n % #benign) + 1]
  end
  local separator = "?"
  if string.find(path, "?", 1, true) then
    separator = "&"
  end
  return wrk.format("GET", path .. separator .. tag .. "=" .. n, {
    ["User-Agent"] = "fault-test/" .. tag,
  })
end

function response(status, headers, body)
  responses = responses + 1
  if limit > 0 and responses == limit then
    wrk.thread:stop()
    if done_file then
      local handle = io.open(done_file, "w")
      handle:write(responses, "\n")
      handle:close()
    end
  end
end

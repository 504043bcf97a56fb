-- json.lua -- a tiny strict JSON reader for the CLI test suites, so they
-- need nothing beyond lua5.4 (python3 and jq may be missing on CI).
--
--   lua5.4 tests/cli/json.lua [PATH]       one JSON document on stdin
--   lua5.4 tests/cli/json.lua --lines      every stdin line is a document
--
-- Exits 1 with a message if the input is not valid JSON. With the global
-- JSON_MODULE set, loading it returns {decode = function(text)} instead. With PATH
-- (components separated by "/", array indexes from 1, "#" for a length)
-- prints the value found there: strings raw, null as "null", objects and
-- arrays as "{…}" / "[…]"; a missing component prints "<missing>".

local function decoder(s)
  local pos = 1
  local function fail(msg)
    error(string.format("json: %s at offset %d", msg, pos - 1), 0)
  end
  local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local value
  local escapes = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b",
                    f = "\f", n = "\n", r = "\r", t = "\t" }
  local function str()
    pos = pos + 1
    local out = {}
    while true do
      local c = s:sub(pos, pos)
      if c == "" then fail("unterminated string") end
      if c == '"' then pos = pos + 1; return table.concat(out) end
      if c:byte() < 32 then fail("control character in string") end
      if c == "\\" then
        local e = s:sub(pos + 1, pos + 1)
        if e == "u" then
          local hex = s:sub(pos + 2, pos + 5)
          if not hex:match("^%x%x%x%x$") then fail("bad \\u escape") end
          out[#out + 1] = utf8.char(tonumber(hex, 16))
          pos = pos + 6
        elseif escapes[e] then
          out[#out + 1] = escapes[e]; pos = pos + 2
        else
          fail("bad escape")
        end
      else
        out[#out + 1] = c; pos = pos + 1
      end
    end
  end
  local function num()
    local m = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if not m or not m:match("^-?0%f[^%d]") and not m:match("^-?[1-9]") then
      fail("bad number")
    end
    pos = pos + #m
    return math.tointeger(tonumber(m)) or tonumber(m)
  end
  local NULL = setmetatable({}, { __tostring = function() return "null" end })
  function value()
    ws()
    local c = s:sub(pos, pos)
    if c == "{" then
      local o = {}
      pos = pos + 1; ws()
      if s:sub(pos, pos) == "}" then pos = pos + 1; return o end
      while true do
        ws()
        if s:sub(pos, pos) ~= '"' then fail("expected a key") end
        local k = str(); ws()
        if s:sub(pos, pos) ~= ":" then fail("expected ':'") end
        pos = pos + 1
        o[k] = value(); ws()
        local d = s:sub(pos, pos); pos = pos + 1
        if d == "}" then return o end
        if d ~= "," then fail("expected ',' or '}'") end
      end
    elseif c == "[" then
      local a = { is_array = true }
      pos = pos + 1; ws()
      if s:sub(pos, pos) == "]" then pos = pos + 1; return a end
      while true do
        a[#a + 1] = value(); ws()
        local d = s:sub(pos, pos); pos = pos + 1
        if d == "]" then return a end
        if d ~= "," then fail("expected ',' or ']'") end
      end
    elseif c == '"' then return str()
    elseif s:find("^true", pos) then pos = pos + 4; return true
    elseif s:find("^false", pos) then pos = pos + 5; return false
    elseif s:find("^null", pos) then pos = pos + 4; return NULL
    else return num() end
  end
  return function()
    local v = value(); ws()
    if pos <= #s then fail("trailing characters") end
    return v
  end
end

local function show(v)
  if type(v) == "table" then
    if v.is_array then return "[…]" end
    if getmetatable(v) then return "null" end
    return "{…}"
  end
  return tostring(v)
end

local function lookup(v, path)
  for part in path:gmatch("[^/]+") do
    if type(v) ~= "table" then return "<missing>" end
    if part == "#" then
      local n = 0
      for k in pairs(v) do if k ~= "is_array" then n = n + 1 end end
      v = n
    else
      local i = math.tointeger(tonumber(part))
      if v.is_array and i then v = v[i] else v = v[part] end
      if v == nil then return "<missing>" end
    end
  end
  return show(v)
end

-- Loaded with JSON_MODULE set (github_scenarios.lua), it is a library.
if JSON_MODULE then return { decode = function(s) return decoder(s)() end } end

local input = io.read("a")
local ok, err = pcall(function()
  if arg[1] == "--lines" then
    local n = 0
    for line in input:gmatch("[^\n]+") do
      n = n + 1
      local okl, e = pcall(decoder(line))
      if not okl then error("line " .. n .. ": " .. e, 0) end
    end
    if n == 0 then error("no lines", 0) end
  else
    local v = decoder(input)()
    if arg[1] then print(lookup(v, arg[1])) end
  end
end)
if not ok then
  io.stderr:write(err, "\n")
  os.exit(1)
end

-- hyblua/errors.lua — user errors versus bugs, decided once for the whole library.
--
-- A *user error* is a message meant for the person at the keyboard: a bad argument, an unknown key, a
-- missing file, a value out of range. The library raises it with hb.user_error(msg [, level]); it is a
-- plain string (pcall, tostring, :find and `..` work as with any error) that the library also records
-- as a user error. The hyblua executable (lua/main.c) prints a recorded message as it is, one line with
-- no traceback, and prints every other error — a real bug, an "attempt to index a nil value" — with
-- its traceback; `hyblua --traceback` (or HYBLUA_TRACEBACK=1) shows tracebacks for user errors too.
--
--   hb.user_error(msg [, level])   raise msg as a user error. level (as error()'s; default 0 = no
--       position): with level >= 1 the message is prefixed by the position of the first caller at or
--       above that level that is not library code ("myscript.lua:7: ..."), never by a position inside
--       the library. A leading position inside the library already in msg (from a binding's
--       luaL_error, "…/lua/hyblua/config.lua:306: ") is removed.
--   hb.is_user_error(msg)          was msg raised by hb.user_error (in this chunk)?
--   hb.rethrow(err [, prefix])     re-raise a caught error as a string, prefixed: a user error stays
--       one (its library position removed), anything else is raised unchanged in kind (a bug stays
--       a bug)
--
-- The record is the table registry["hyblua.user_errors"] (message → true), which main.c reads in its
-- message handler and clears before each chunk; it is emptied when it grows past 256 messages, so a
-- loop catching errors cannot grow it without bound.
--
-- The module returns {user_error =, is_user_error =, rethrow =}; lua/hyblua/init.lua requires it first
-- and exports the three on hb. Library modules `local user_error = require("hyblua.errors").user_error`
-- (it needs nothing from the binding, so any module can require it).
local M = {}

local reg = debug.getregistry()
local KEY = "hyblua.user_errors"
local MAX = 256

-- the library's own directory, from this file's chunk name ("@/path/lua/hyblua/errors.lua")
local src = debug.getinfo(1, "S").source
local libdir = src:match("^@(.*[/\\])errors%.lua$") or ""

local function is_library_source(source)
  return libdir ~= "" and type(source) == "string" and source:sub(1, #libdir + 1) == "@" .. libdir
end

-- does the chunk name `file` of a "file:line:" prefix (possibly shortened to "...tail") name a file
-- of the library?
local function is_library_file(file)
  if libdir == "" then return false end
  if file:sub(1, 3) == "..." then
    local tail = file:sub(4)
    local rel = tail:match("hyblua[/\\](.+)$")
    return rel ~= nil and (libdir .. rel):sub(-#tail) == tail
  end
  return file:sub(1, #libdir) == libdir
end

-- msg without a leading "<library file>:<line>: "
local function strip_library_position(msg)
  local file, rest = msg:match("^(.-%.lua):%d+: (.*)$")
  if file and is_library_file(file) then return rest end
  return msg
end

local function record(msg)
  local t = reg[KEY]
  if type(t) ~= "table" then t = {}; reg[KEY] = t end
  local n = (t[1] or 0) + 1
  if n > MAX then t = {}; reg[KEY] = t; n = 1 end
  t[1] = n
  t[msg] = true
end

function M.user_error(msg, level)
  msg = strip_library_position(tostring(msg))
  -- a whole level in [0, 10^6] (Lua stacks are no deeper; debug.getinfo takes a C int, and a float
  -- level such as 2^53 would never advance)
  level = type(level) == "number" and level == level and math.min(math.max(math.floor(level), 0), 1000000) or 0
  if level > 0 then
    -- +1: skip user_error itself
    local lvl = math.tointeger(level) + 1
    while true do
      local info = debug.getinfo(lvl, "Sl")
      if not info then break end
      if info.what ~= "C" and info.currentline and info.currentline > 0 and not is_library_source(info.source) then
        msg = info.short_src .. ":" .. info.currentline .. ": " .. msg
        break
      end
      lvl = lvl + 1
    end
  end
  record(msg)
  error(msg, 0)
end

function M.is_user_error(msg)
  local t = reg[KEY]
  return type(msg) == "string" and type(t) == "table" and t[msg] == true
end

function M.rethrow(err, prefix)
  prefix = prefix == nil and "" or tostring(prefix)
  if M.is_user_error(err) then M.user_error(prefix .. strip_library_position(err)) end
  -- the message is always a string (an error object becomes its tostring)
  error(prefix .. tostring(err), 0)
end

return M

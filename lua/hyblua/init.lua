-- hyblua/init.lua — the Lua half of the library. luaopen_hyblua (C) builds the module table `hb` with
-- tensors, nn functions and mixer kernels, then calls the function returned here to add the pure-Lua
-- parts: nn layers, models, schedules, optimisers, training and evaluation.
return function(hb)
  local function try(name)
    local ok, mod = pcall(require, name)
    if ok then return mod end
    if not tostring(mod):find("module '" .. name .. "' not found", 1, true) then error(mod, 0) end
  end
  for _, name in ipairs { "util", "optim", "models", "schedule", "train", "data", "tokenizer", "config", "eval" } do
    local m = try("hyblua." .. name)
    if type(m) == "function" then m(hb) end
  end
  return hb
end

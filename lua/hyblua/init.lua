-- hyblua/init.lua — the Lua half of the library. luaopen_hyblua (C) builds the module table `hb` with
-- tensors, nn functions and mixer kernels, then calls the function returned here to add the pure-Lua
-- parts. Each part is a module returning function(hb) that installs itself into hb:
--   eager: errors (first: every part may raise user errors), optim, models, schedule, train, config,
--          data, tokenizer (cheap, used by every recipe)
--   lazy:  eval, recipe, dist, plot (loaded on first use of hb.eval, hb.recipe, hb.dist, hb.plot)
return function(hb)
  local function load(name)
    local ok, mod = pcall(require, "hyblua." .. name)
    if not ok then
      -- a part that is simply absent is skipped; any other failure is a real error
      if tostring(mod):find("module 'hyblua." .. name .. "' not found", 1, true) then return end
      error(mod, 0)
    end
    if type(mod) == "function" then mod(hb) end
  end
  for _, name in ipairs { "errors", "optim", "models", "schedule", "train", "config", "data", "tokenizer" } do load(name) end
  local lazy = { eval = true, recipe = true, dist = true, plot = true }
  setmetatable(hb, {
    __index = function(t, k)
      if lazy[k] then
        lazy[k] = nil
        load(k)
        return rawget(t, k)
      end
    end,
  })
  return hb
end

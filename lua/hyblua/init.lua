-- hyblua/init.lua — the Lua half of the library. luaopen_hyblua (lua/hyblua.c) builds the module table
-- `hb` from the C bindings (tensors, nn functions, mixer kernels, hb.io, hb.config, hb.data, hb.tokenizer),
-- registers it as package.loaded["hyblua.binding"], then requires this file, which adds the pure-Lua
-- modules to it. Every module returns its table and requires what it uses; nothing is installed by
-- side effect, and a module that is missing or fails to load is an error (`require "hyblua"` fails).
--   eager: errors (first: hb.user_error, hb.is_user_error, hb.rethrow), optim, models (with the mixers
--          of lua/hyblua/mixers/), schedule, train, config, data
--   lazy:  eval, recipe, dist, plot, stats, grid (loaded on first use of hb.eval, hb.recipe, hb.dist, hb.plot, ...)
local hb = require "hyblua.binding"

local errors = require "hyblua.errors"
hb.user_error, hb.is_user_error, hb.rethrow = errors.user_error, errors.is_user_error, errors.rethrow
hb.optim = require "hyblua.optim"
hb.models = require "hyblua.models"
hb.load_pretrained = hb.models.load_pretrained
hb.schedule = require "hyblua.schedule"
local train = require "hyblua.train"
hb.train, hb.train_utils = train.run, train
hb.config = require "hyblua.config"
hb.data = require "hyblua.data"

local lazy = { eval = "hyblua.eval", recipe = "hyblua.recipe", dist = "hyblua.dist", plot = "hyblua.plot", stats = "hyblua.stats",
               grid = "hyblua.grid" }
setmetatable(hb, {
  __index = function(t, k)
    local name = lazy[k]
    if not name then return nil end
    local mod = require(name)
    rawset(t, k, mod)
    return mod
  end,
})
return hb

-- hyblua/mixers/init.lua — the list of built-in token mixers, one file each (torch7 nn's habit). Each
-- file registers its def with hb.models.register_mixer (registry.register) when required here. Adding
-- a mixer: write lua/hyblua/mixers/<name>.lua and add its line below (docs/architecture.md).
require "hyblua.mixers.attention"
require "hyblua.mixers.hgrn"
require "hyblua.mixers.retnet"
require "hyblua.mixers.gla"
require "hyblua.mixers.hgrn2"
require "hyblua.mixers.delta_net"
require "hyblua.mixers.gated_deltanet"
require "hyblua.mixers.kda"

local registry = require "hyblua.mixers.registry"
registry.seal_builtins()
return registry

-- tests/scripts/test_ema_mixer.lua — registers "test_ema", a tiny Lua-defined mixer (hb.models.register_mixer)
-- used by tests that need a custom mixer in a model: dofile("tests/scripts/test_ema_mixer.lua")(hb).
return function(hb)
  hb.models.register_mixer("test_ema", {
    declare = function(add, d) add("decay_logit", { d }, "zeros"); add("v_proj.weight", { d, d }, "normal") end,
    forward = function(ctx, x, opts, W) return x:matmul(W("v_proj.weight"):t()) * W("decay_logit"):sigmoid() end,
  })
end

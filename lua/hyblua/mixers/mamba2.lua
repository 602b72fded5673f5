-- hyblua/mixers/mamba2.lua — Mamba-2 (model_type "mamba2", fla's Mamba2): the SSD recurrence
-- S_t = e^{Δ_t A_h} S_{t−1} + B_t (Δ_t x_t)ᵀ, y_t = S_tᵀ C_t + D_h x_t per head h, after one input
-- projection [z | xBC | dt], a short convolution (with bias) over xBC, and before a gated RMSNorm and
-- out_proj. The model has its own block (norm → mixer, no MLP) and names (backbone.*, mixer, norm_f);
-- hybrid attention layers get the standard block. Maths, fla's layer and what fla cannot load:
-- docs/mixers.md#mamba-2. Kernels: hb.ssd / hb.ssd_step (kernels/ssd.c).
local hb = require "hyblua.binding"
local C = require "hyblua.config_fla"
local common = require "hyblua.mixers.common"
local registry = require "hyblua.mixers.registry"

local NULL, cerr, show, is_null = C.NULL, C.cerr, C.show, C.is_null
local lin, heads, flat, W = common.lin, common.heads, common.flat, common.W

local INF = { __float__ = "Infinity" } -- how Hugging Face's config JSON writes float("inf")

local mamba2 = {
  model_type = "mamba2",
  architecture = "Mamba2ForCausalLM",
  letter = "L",
  packed = true,                            -- handles ctx.cu_seqlens (packed documents)
  -- Mamba2Config's own fields and defaults (and its values of common ones). num_heads null = derived
  -- (expand·hidden_size / head_dim), written back as fla's config does. chunk_size is stored; the kernel
  -- uses its own chunk length (the result is the same up to rounding). residual_in_fp32 changes nothing
  -- in float32. group_mapping is hyblua's (fla ignores it): which q/k group a head reads when n_groups > 1.
  config = {
    head_dim = 64, state_size = 128, num_hidden_layers = 48, norm_eps = 1e-5, pad_token_id = 0, expand = 2,
    conv_kernel = 4, n_groups = 1, use_bias = false, use_conv_bias = true, conv_init = NULL,
    A_init_range = { 1, 16 }, D_has_hdim = false, hidden_act = "silu", residual_in_fp32 = true,
    dt_min = 0.001, dt_max = 0.1, dt_init_floor = 1e-4, dt_limit = { 0.0, INF }, rescale_prenorm_residual = true,
    rmsnorm = true, norm_before_gate = false, chunk_size = 256, num_heads = NULL, group_mapping = "tiled",
  },
  unsupported = { hidden_act = "silu" },
  names = { model = "backbone", mixer = "mixer", final_norm = "norm_f" },
}

-- a config number that JSON may spell {"__float__": "Infinity" | "-Infinity" | "NaN"}
local SPECIAL = { Infinity = math.huge, ["-Infinity"] = -math.huge, NaN = 0 / 0 }
local function json_number(v)
  if type(v) == "number" then return v end
  if type(v) == "table" and type(v.__float__) == "string" then return SPECIAL[v.__float__] end
  return nil
end
-- and back: ±inf as Hugging Face writes it (write_json would turn it into null)
local function to_json_number(x)
  if x == math.huge then return { __float__ = "Infinity" } end
  if x == -math.huge then return { __float__ = "-Infinity" } end
  return x
end

-- a pair [lo, hi] of numbers (JSON's ±Infinity allowed) with lo <= hi; returns lo, hi
local function pair(cfg, k, what)
  local p = cfg[k]
  local lo, hi = type(p) == "table" and json_number(p[1]), type(p) == "table" and json_number(p[2])
  if type(p) ~= "table" or #p ~= 2 or not lo or not hi or lo ~= lo or hi ~= hi or lo > hi then
    cerr("'%s' must be a pair [lo, hi] of numbers with lo <= hi (%s; got %s)", k, what, show(p))
  end
  return lo, hi
end

local function need_bool(cfg, k)
  if type(cfg[k]) ~= "boolean" then cerr("'%s' must be true or false (got %s)", k, show(cfg[k])) end
end

-- sizes: I = expand·d (fla's intermediate_size), H = I / head_dim heads of width P = head_dim, state
-- size N, n_groups G dividing H; cfg._I, _H, _G, _conv_dim (I + 2·G·N), _dt_lo, _dt_hi, _tiled
function mamba2.validate(cfg)
  local d = cfg.hidden_size
  local P = C.need_int(cfg, "head_dim", 1)
  local N = C.need_int(cfg, "state_size", 1)
  local G = C.need_int(cfg, "n_groups", 1)
  C.need_int(cfg, "conv_kernel", 1)
  C.need_int(cfg, "chunk_size", 1)
  local I = C.derived("expand * hidden_size", d * C.need_num(cfg, "expand", 0, C.MAX_SIZE), 1)
  if I % P ~= 0 then cerr("expand * hidden_size = %d must be divisible by head_dim %d", I, P) end
  local H = I // P
  if is_null(cfg.num_heads) or cfg.num_heads == 0 then
    cfg.num_heads = H
  elseif C.need_int(cfg, "num_heads", 1) ~= H then
    cerr("num_heads * head_dim = %d must equal expand * hidden_size = %d", cfg.num_heads * P, I)
  end
  if H % G ~= 0 then cerr("num_heads %d must be a multiple of n_groups %d", H, G) end
  for _, k in ipairs { "use_bias", "use_conv_bias", "D_has_hdim", "rmsnorm", "norm_before_gate", "residual_in_fp32",
    "rescale_prenorm_residual" } do
    need_bool(cfg, k)
  end
  local a0, a1 = pair(cfg, "A_init_range", "A = -exp(A_log) starts uniform in it")
  if not (a0 > 0) or a1 == math.huge then
    cerr("'A_init_range' must be a positive finite pair [min, max] (got [%s, %s])", tostring(a0), tostring(a1))
  end
  local dmin = C.need_num(cfg, "dt_min", 0, math.huge)
  local dmax = C.need_num(cfg, "dt_max", 0, math.huge)
  if not (dmin > 0) or dmax < dmin then cerr("dt_min and dt_max must satisfy 0 < dt_min <= dt_max (got %s, %s)", dmin, dmax) end
  if not (C.need_num(cfg, "dt_init_floor", 0, math.huge) > 0) then cerr("dt_init_floor must be > 0") end
  if not is_null(cfg.conv_init) then C.need_num(cfg, "conv_init", 0, math.huge) end
  local lo, hi = pair(cfg, "dt_limit", "the range Δ is clamped to")
  cfg.dt_limit = { to_json_number(lo), to_json_number(hi) } -- a new table: defaults are shared
  if cfg.group_mapping ~= "tiled" and cfg.group_mapping ~= "blocked" then
    cerr("group_mapping must be 'tiled' (head h reads group h mod n_groups, fla's forward) or 'blocked' " ..
      "(group h // (num_heads / n_groups), mamba_ssm) (got %s)", show(cfg.group_mapping))
  end
  cfg._I, cfg._H, cfg._G, cfg._conv_dim = I, H, G, I + 2 * G * N
  cfg._dt_lo, cfg._dt_hi, cfg._tiled = lo, hi, cfg.group_mapping == "tiled" and 1 or 0
end

-- ---- initialisation (fla's Mamba2PreTrainedModel._init_weights) --------------------------------------
-- A_log = log A, A ~ U(A_init_range)
local function A_log_init(c)
  local lo, hi = json_number(c.A_init_range[1]), json_number(c.A_init_range[2])
  return function(shape) return (hb.rand(shape) * (hi - lo) + lo):log() end
end
-- dt_bias = inverse softplus of Δ0, Δ0 log-uniform in [dt_min, dt_max] and at least dt_init_floor
local function dt_bias_init(c)
  local l0, l1 = math.log(c.dt_min), math.log(c.dt_max)
  return function(shape)
    local dt = (hb.rand(shape) * (l1 - l0) + l0):exp():clamp(c.dt_init_floor)
    return dt + dt:neg():expm1():neg():log()
  end
end
-- out_proj with rescale_prenorm_residual: kaiming_uniform(a = √5), i.e. U(±1/√fan_in), over √layers
local function out_init(c)
  if not c.rescale_prenorm_residual then return "normal" end
  return function(shape)
    return (hb.rand(shape) * 2 - 1) * (1 / math.sqrt(shape[2]) / math.sqrt(c.num_hidden_layers))
  end
end

-- fla's parameter order (named_parameters): conv1d, in_proj, dt_bias, A_log, norm, D, out_proj
function mamba2.declare(add, d, _, c)
  local I, H, G, N, P, CD = c._I, c._H, c._G, c.state_size, c.head_dim, c._conv_dim
  local ci = c.conv_init
  add("conv1d.weight", { CD, 1, c.conv_kernel },
    is_null(ci) and "normal" or function(shape) return (hb.rand(shape) * 2 - 1) * ci end)
  if c.use_conv_bias then add("conv1d.bias", { CD }, "zeros") end
  add("in_proj.weight", { I + CD + H, d })
  if c.use_bias then add("in_proj.bias", { I + CD + H }, "zeros") end
  add("dt_bias", { H }, dt_bias_init(c), true)
  add("A_log", { H }, A_log_init(c), true)
  if c.rmsnorm then add("norm.weight", { I }, "ones") end
  add("D", { c.D_has_hdim and I or H }, "ones", true)
  add("out_proj.weight", { d, I }, out_init(c))
  if c.use_bias then add("out_proj.bias", { d }, "zeros") end
  return { I = I, H = H, G = G, N = N, P = P, conv_dim = CD, W = c.conv_kernel, tiled = c._tiled }
end

-- RMSNormGated(I, group_size = I / G): norm(y ⊙ silu(z)) (norm_before_gate false) or norm(y) ⊙ silu(z),
-- the RMS taken over each group of I / G channels, then × weight
local function gated_norm(y, z, w, G, eps, before)
  if not before then y = y * z:silu() end
  if G == 1 then
    y = hb.rmsnorm(y, w, eps)
  else
    local s = y:shape()
    y = hb.rmsnorm(y:view(s[1], s[2], G, s[3] // G), nil, eps):view(s[1], s[2], s[3]) * w
  end
  if before then y = y * z:silu() end
  return y
end

function mamba2.forward(ctx, x)
  local c, L = ctx.m.config, ctx.layer
  local I, H, G, N, P, CD = L.I, L.H, L.G, L.N, L.P, L.conv_dim
  local zxbcdt = lin(ctx, x, "in_proj", c.use_bias)
  local z = zxbcdt:narrow(3, 1, I)
  local xBC = common.conv(ctx, zxbcdt:narrow(3, I + 1, CD), "conv1d", "silu", c.use_conv_bias)
  local dt = zxbcdt:narrow(3, I + CD + 1, H)
  local xs = heads(xBC:narrow(3, 1, I), H, P)                 -- x [B, T, H, P]
  local k = heads(xBC:narrow(3, I + 1, G * N), G, N)          -- B [B, T, G, N]
  local q = heads(xBC:narrow(3, I + G * N + 1, G * N), G, N)  -- C [B, T, G, N]
  dt = (dt + W(ctx, "dt_bias")):softplus():clamp(c._dt_lo, c._dt_hi)   -- Δ [B, T, H]
  local g = dt * W(ctx, "A_log"):exp():neg()                  -- Δ·A ≤ 0
  local v = xs * dt:unsqueeze(4)                              -- Δ ⊙ x
  local y = common.recur(ctx,
    function(ws, cu)
      return hb.ssd { q = q, k = k, v = v, g = g, tiled_groups = L.tiled, mode = ctx.mode, state = ws, cu_seqlens = cu }
    end,
    function(st)
      return hb.ssd_step { state = st, q = q:select(2, 1), k = k:select(2, 1), v = v:select(2, 1), g = g:select(2, 1),
        tiled_groups = L.tiled }:unsqueeze(2)
    end)
  local D = W(ctx, "D")
  y = flat(y + xs * (c.D_has_hdim and D:view(H, P) or D:view(H, 1)))
  if c.rmsnorm then
    y = gated_norm(y, z, W(ctx, "norm.weight"), G, c.norm_eps, c.norm_before_gate)
  else
    y = y * z:silu()
  end
  return lin(ctx, y, "out_proj", c.use_bias)
end

-- Mamba2Block: h + mixer(rms(h; norm.weight, norm_eps)), no MLP. Other layers of a Mamba-2 model
-- (hybrid attention from `attn`) get the standard block: attn_norm, mixer, mlp_norm, mlp.
mamba2.block = {
  declare = function(add, i, cfg, mixer, standard)
    if cfg._attn_at[i] then return standard.declare(add, i, cfg, mixer) end
    add("norm.weight", { cfg.hidden_size }, "ones")
    mixer()
  end,
  forward = function(ctx, h, mix, standard)
    if ctx.layer.kind == "attention" then return standard.forward(ctx, h, mix) end
    return h + mix(hb.rmsnorm(h, W(ctx, "norm.weight"), ctx.m.config.norm_eps))
  end,
}

-- cache.state [B, H, N, P] (fla's recurrent_state is its transpose); the conv cache keeps the last
-- conv_kernel − 1 inputs of xBC (fla's conv_state keeps conv_kernel: the oldest one is never read again)
function mamba2.state_bytes(L)
  return L.H * L.N * L.P * 4, (L.W - 1) * L.conv_dim * 4
end

-- S ← e^{g} S + k vᵀ and Sᵀ q per head: 5·H·N·P (RetNet's count with K = N, V = P; = 5·I·N)
function mamba2.flops(L) return 5 * L.H * L.N * L.P end

registry.register("mamba2", mamba2)
return mamba2

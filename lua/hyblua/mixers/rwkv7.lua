-- hyblua/mixers/rwkv7.lua — RWKV-7 "Goose" (model_type "rwkv7", fla's RWKV7Attention, RWKV7FeedForward
-- and RWKV7Block): token shift, LoRA gates, the diagonal-plus-low-rank state update
--   S_t = diag(e^{w_t}) S_{t−1} + b_t (a_tᵀ S_{t−1}) + k_t v_tᵀ,  a = −κ̂, b = κ̂ ⊙ â,  o_t = S_tᵀ r_t
-- with the v_first residual, group norm and gate-output correction; its own block (LayerNorms with bias,
-- pre_norm on layer 0, the squared-ReLU channel mix with its own token shift) and fla's own
-- initialisation. Maths and fla's layer: docs/mixers.md#rwkv-7. Kernels: hb.dplr / hb.dplr_step
-- (kernels/dplr.c).
local hb = require "hyblua.binding"
local C = require "hyblua.config_fla"
local common = require "hyblua.mixers.common"
local registry = require "hyblua.mixers.registry"

local NULL, cerr, show = C.NULL, C.cerr, C.show
local lin, heads, flat, W = common.lin, common.heads, common.flat, common.W

local W_SCALE = -0.6065306597126334 -- −e^{−1/2}: w = W_SCALE·σ(w_lora(x)) is the log decay

local rwkv7 = {
  model_type = "rwkv7",
  architecture = "RWKV7ForCausalLM",
  letter = "L",
  packed = true,                            -- handles ctx.cu_seqlens (packed documents)
  -- RWKV7Config's own fields and the common ones whose default differs
  config = {
    attn_mode = "chunk", hidden_size = 2048, hidden_ratio = 4, num_hidden_layers = 24, head_dim = 64,
    num_heads = NULL, decay_low_rank_dim = 64, gate_low_rank_dim = 128, a_low_rank_dim = 64,
    v_low_rank_dim = 16, hidden_act = "sqrelu", norm_first = true, norm_bias = true, norm_eps = 1e-5,
    use_l2warp = true, value_dim = NULL, attn = NULL,
  },
  unsupported = { hidden_act = "sqrelu" },
}

-- ---- config ---------------------------------------------------------------------------------------------
-- Python's round(): halves to even
local function pyround(x)
  local f = math.floor(x)
  if x - f > 0.5 or (x - f == 0.5 and f % 2 == 1) then f = f + 1 end
  return f
end

local function need_bool(cfg, k)
  if type(cfg[k]) ~= "boolean" then cerr("'%s' must be true or false (got %s)", k, show(cfg[k])) end
end

-- heads: fla's config derives whichever of head_dim / num_heads is null from the other; its layer then
-- takes num_heads = hidden_size // head_dim, so a disagreeing num_heads is an error here
local function check_heads(cfg)
  local d = cfg.hidden_size
  if C.is_null(cfg.head_dim) and C.is_null(cfg.num_heads) then cerr("rwkv7: head_dim or num_heads must be set") end
  if C.is_null(cfg.head_dim) then cfg.head_dim = d // C.need_int(cfg, "num_heads", 1) end
  local hd = C.need_int(cfg, "head_dim", 1)
  if d % hd ~= 0 then cerr("hidden_size %d is not divisible by head_dim %d", d, hd) end
  if C.is_null(cfg.num_heads) then cfg.num_heads = d // hd end
  local H = C.need_int(cfg, "num_heads", 1)
  if H ~= d // hd then
    cerr("num_heads %d disagrees with hidden_size / head_dim = %d (fla's RWKV-7 layer takes its heads from head_dim)",
      H, d // hd)
  end
end

-- value_dim: null (hidden_size), one width or a list with one width per layer, each a multiple of
-- hidden_size; stored as the list fla's config saves
local function check_value_dim(cfg)
  local d, L, vd = cfg.hidden_size, cfg.num_hidden_layers, cfg.value_dim
  if C.is_null(vd) then vd = d end
  local list = {}
  if type(vd) == "number" then
    for i = 1, L do list[i] = vd end
  elseif type(vd) == "table" then
    if #vd ~= L then cerr("value_dim has %d entries but num_hidden_layers is %d", #vd, L) end
    for i = 1, L do list[i] = vd[i] end
  else
    cerr("value_dim must be null, an integer or a list of integers (got %s)", show(vd))
  end
  for i, v in ipairs(list) do
    if math.type(v) == "float" and v == math.floor(v) then v = math.tointeger(v) or v end
    if math.type(v) ~= "integer" or v < d or v % d ~= 0 or v > C.MAX_SIZE then
      cerr("value_dim[%d] = %s must be an integer multiple of hidden_size %d", i - 1, show(list[i]), d)
    end
    list[i] = v
  end
  -- v_first is layer 0's values; the later RWKV-7 layers interpolate towards it
  if not cfg._attn_at[0] then
    for i = 1, L - 1 do
      if not cfg._attn_at[i] and list[i + 1] ~= list[1] then
        cerr("value_dim[%d] = %d differs from value_dim[0] = %d (every RWKV-7 layer mixes in layer 0's values)",
          i, list[i + 1], list[1])
      end
    end
  end
  cfg.value_dim = list
end

-- a LoRA width: the config's, or (null) fla's layer default max(32, round(c·√d·factor / 32)·32)
local function rank(cfg, k, c, factor)
  if not C.is_null(cfg[k]) then return C.need_int(cfg, k, 1) end
  return math.max(32, math.tointeger(pyround(c * math.sqrt(cfg.hidden_size) * factor / 32) * 32))
end

function rwkv7.validate(cfg)
  local d = cfg.hidden_size
  check_heads(cfg)
  check_value_dim(cfg)
  if cfg.attn_mode ~= "chunk" and cfg.attn_mode ~= "fused_recurrent" then
    cerr("attn_mode must be 'chunk' or 'fused_recurrent' (got %s)", show(cfg.attn_mode))
  end
  need_bool(cfg, "norm_first"); need_bool(cfg, "norm_bias"); need_bool(cfg, "fuse_norm")
  local factor = cfg.head_dim / 64
  cfg._rank = { w = rank(cfg, "decay_low_rank_dim", 2.5, factor), g = rank(cfg, "gate_low_rank_dim", 5, 1),
                a = rank(cfg, "a_low_rank_dim", 2.5, factor), v = rank(cfg, "v_low_rank_dim", 1.7, factor) }
  -- channel-mix width: intermediate_size, else int(d·hidden_ratio) rounded up to a multiple of 32
  if C.is_null(cfg.intermediate_size) then
    local r = C.is_null(cfg.hidden_ratio) and 4 or C.need_num(cfg, "hidden_ratio", 0, 1e6)
    cfg._ffn = C.derived("the channel-mix width (hidden_size * hidden_ratio, rounded up to 32)",
      32 * math.ceil(math.floor(d * r) / 32), 1)
  else
    cfg._ffn = C.need_int(cfg, "intermediate_size", 1)
  end
end

-- ---- initialisation (fla's RWKV7Attention._initialize_weights, LoRA, RWKV7FeedForward, the model's) ------
-- torch.nn.init.orthogonal_: rows × cols (trailing dims flattened) with orthonormal columns (rows ≥ cols)
-- or rows, times gain — the Q factor (diag R > 0) of a standard normal matrix, by blocked Gram–Schmidt
-- with re-orthogonalisation in float64
local function orthogonal(gain)
  return function(shape)
    local rows, cols = shape[1], 1
    for i = 2, #shape do cols = cols * shape[i] end
    local n, m = math.max(rows, cols), math.min(rows, cols)
    local A = hb.randn(n, m, "float64")
    local Q = hb.zeros(n, m, "float64")
    local BS = 32
    for j0 = 0, m - 1, BS do
      local bw = math.min(BS, m - j0)
      local P = A:narrow(2, j0 + 1, bw)
      if j0 > 0 then
        local Qp = Q:narrow(2, 1, j0)
        for _ = 1, 2 do P = P - Qp:matmul(Qp:t():matmul(P)) end
      end
      for j = 1, bw do
        local v = P:narrow(2, j, 1)
        if j > 1 then
          local Qb = Q:narrow(2, j0 + 1, j - 1)
          for _ = 1, 2 do v = v - Qb:matmul(Qb:t():matmul(v)) end
        end
        Q:narrow(2, j0 + j, 1):copy_(v / v:square():sum():sqrt():item())
      end
    end
    if rows < cols then Q = Q:t() end
    return (Q * gain):contiguous():float():view(table.unpack(shape))
  end
end

-- a parameter of `shape` filled from f(n) for n = 0 .. numel − 1
local function fill(f)
  return function(shape)
    local n, vals = 1, {}
    for _, s in ipairs(shape) do n = n * s end
    for j = 1, n do vals[j] = f(j - 1) end
    return hb.tensor(vals):view(table.unpack(shape))
  end
end

-- fla's position profiles of layer i (0-based) over the d channels
local function profiles(i, cfg)
  local d, L, hd = cfg.hidden_size, cfg.num_hidden_layers, cfg.head_dim
  local r01 = L > 1 and i / (L - 1) or 0        -- fla divides by L − 1 (a 1-layer model: 0 here)
  local r10 = 1 - i / L
  local p = { r01 = r01, r10 = r10 }
  function p.ddd(n) return n / d end
  function p.linear(n) return n / math.max(d - 1, 1) - 0.5 end
  function p.zigzag(n)
    local h = (hd - 1) / 2
    if h == 0 then return 0 end
    local z = ((n % hd) - h) / h
    return z * math.abs(z)
  end
  function p.www(n) return -6 + 6 * (n / math.max(d - 1, 1)) ^ (1 + r01 ^ 0.3) end
  return p
end

-- LoRA(d → r → out): lora.0 zeros, lora.2 orthogonal (gain 0.1·max(1, √(r/out))), bias `bias` (a fill)
local function declare_lora(add, name, d, r, out, bias)
  add(name .. ".lora.0.weight", { r, d }, "zeros")
  add(name .. ".lora.2.weight", { out, r }, orthogonal(0.1 * (r > out and math.sqrt(r / out) or 1)))
  if bias then add(name .. ".lora.2.bias", { out }, bias) end
end

function rwkv7.declare(add, d, i, c)
  local H, K, vd, R = c.num_heads, c.head_dim, c.value_dim[i + 1], c._rank
  local p = profiles(i, c)
  for _, x in ipairs { { "x_r", 0.2 }, { "x_w", 0.9 }, { "x_k", 0.7 }, { "x_v", 0.7 }, { "x_a", 0.9 }, { "x_g", 0.2 } } do
    local e = x[2] * p.r10
    add(x[1], { 1, 1, d }, fill(function(n) return 1 - p.ddd(n) ^ e end))
  end
  add("k_k", { d }, fill(function(n) return 0.71 - p.linear(n) * 0.1 end))
  add("k_a", { d }, fill(function() return 1.02 end))
  add("r_k", { H, K }, fill(function() return -0.04 end))
  add("r_proj.weight", { d, d }, orthogonal(1))
  add("k_proj.weight", { d, d }, orthogonal(0.1))
  add("v_proj.weight", { vd, d }, orthogonal(1))
  add("o_proj.weight", { d, vd }, "zeros")
  declare_lora(add, "w_lora", d, R.w, d, fill(function(n) return p.www(n) + 0.5 + p.zigzag(n) * 2.5 end))
  if i ~= 0 then declare_lora(add, "v_lora", d, R.v, vd, fill(function(n) return 0.73 - p.linear(n) * 0.4 end)) end
  declare_lora(add, "a_lora", d, R.a, d, fill(function(n) return -0.19 + p.zigzag(n) * 0.3 + p.linear(n) * 0.4 end))
  declare_lora(add, "g_lora", d, R.g, vd, nil)
  local gw = ((i + 1) / c.num_hidden_layers) ^ 0.7
  add("g_norm.weight", { vd }, fill(function() return gw end))
  add("g_norm.bias", { vd }, "zeros")
  return { H = H, K = K, V = vd // H, vd = vd, first = i == 0 }
end

-- the embedding U(−1e−4, 1e−4); the LM head orthogonal with gain 0.5·√(V/d) when V > d, else 0.5
function rwkv7.model_inits(cfg)
  local V, d = cfg.vocab_size, cfg.hidden_size
  return {
    embeddings = function(shape) return hb.rand(table.unpack(shape)) * 2e-4 - 1e-4 end,
    lm_head = orthogonal(V > d and 0.5 * math.sqrt(V / d) or 0.5),
  }
end

-- ---- forward ----------------------------------------------------------------------------------------------
-- LayerNorm over the last dim (biased variance), times w, plus b when given
local function layer_norm(x, w, b, eps)
  local xc = x - x:mean(-1, true)
  local y = xc * (xc:square():mean(-1, true) + eps):rsqrt() * w
  return b and y + b or y
end

-- token shift: x_{t−1} − x_t with x_{−1} = 0, or with a decode cache the last token of the previous call,
-- kept as cache[key] [B, 1, d]. Packed documents (ctx.cu_seqlens): x_{t−1} = 0 at every document's
-- first token, through a mask [1, T, 1] made once per forward (kept in ctx.prepared, which every layer
-- and block of that forward shares).
local function token_shift(ctx, key, x)
  local cache = ctx.cache
  local B, T, d = x:size(1), x:size(2), x:size(3)
  local prev = cache and cache[key] or hb.zeros({ B, 1, d }, x:dtype())
  local shifted = T == 1 and prev or hb.cat({ prev, x:narrow(2, 1, T - 1) }, 2)
  if cache then cache[key] = x:narrow(2, T, 1):clone() end
  if ctx.cu_seqlens then
    local flow = ctx.prepared
    if not flow.keep then
      flow.keep = hb.ones({ 1, T, 1 }, x:dtype())
      for _, s in ipairs(ctx.cu_seqlens:tolist()) do
        if s > 0 and s < T then flow.keep:set(0, 1, s + 1, 1) end
      end
    end
    shifted = shifted * flow.keep
  end
  return shifted - x
end

-- LoRA: lora.2(act(lora.0(x))) (+ bias)
local function lora(ctx, x, name, act, bias)
  local y = hb.linear(x, W(ctx, name .. ".lora.0.weight"))
  if act == "tanh" then y = y:tanh() elseif act == "sigmoid" then y = y:sigmoid() end
  return hb.linear(y, W(ctx, name .. ".lora.2.weight"), bias and W(ctx, name .. ".lora.2.bias") or nil)
end

-- per-head L2 normalisation: fla's fused l2_norm (x·(Σx² + 1e-6)^{−1/2}), or F.normalize without fuse_norm
local function l2norm(x, fused)
  if fused then return common.l2n(x) end
  return x / x:square():sum(-1, true):sqrt():clamp(1e-12)
end

-- ctx.prepared: a table per forward pass; layer 0 leaves its values there as v_first
function rwkv7.prepare() return {} end

function rwkv7.forward(ctx, x)
  local c, L = ctx.m.config, ctx.layer
  local flow = ctx.prepared
  if type(flow) ~= "table" then error("rwkv7: ctx.prepared must be the model's per-forward table (def.prepare)", 0) end
  local delta = token_shift(ctx, "shift", x)
  local function shifted(name) return x + delta * W(ctx, name) end
  local xr, xw, xk, xv, xa, xg = shifted("x_r"), shifted("x_w"), shifted("x_k"), shifted("x_v"), shifted("x_a"), shifted("x_g")
  local r, k, v = lin(ctx, xr, "r_proj"), lin(ctx, xk, "k_proj"), lin(ctx, xv, "v_proj")
  local w = lora(ctx, xw, "w_lora", "tanh", true):sigmoid() * W_SCALE
  if L.first then
    flow.v_first = v
  else -- lerp(v, v_first, s); without an RWKV-7 layer 0 (a hybrid), v_first = 0
    local s = lora(ctx, xv, "v_lora", nil, true):sigmoid()
    v = flow.v_first and v + (flow.v_first - v) * s or v - v * s
  end
  local a = lora(ctx, xa, "a_lora", nil, true):sigmoid()
  local g = lora(ctx, xg, "g_lora", "sigmoid", false)
  local kk = l2norm(heads(k * W(ctx, "k_k"), L.H, L.K), c.fuse_norm ~= false)
  k = k + k * (a - 1) * W(ctx, "k_a")
  r, w, k, a, v = heads(r, L.H, L.K), heads(w, L.H, L.K), heads(k, L.H, L.K), heads(a, L.H, L.K), heads(v, L.H, L.V)
  local na, b = -kk, kk * a
  local o = common.recur(ctx,
    function(ws, cu)
      return hb.dplr { q = r, k = k, v = v, a = na, b = b, gk = w, scale = 1, mode = ctx.mode, state = ws, cu_seqlens = cu }
    end,
    function(st)
      return hb.dplr_step { state = st, q = r:select(2, 1), k = k:select(2, 1), v = v:select(2, 1),
        a = na:select(2, 1), b = b:select(2, 1), gk = w:select(2, 1), scale = 1 }:unsqueeze(2)
    end)
  -- GroupNorm (H groups, eps head_dim·norm_eps), then the gate-output correction (o + Σ_j r·k·r_k · v) ⊙ g
  o = flat(layer_norm(o, 1, nil, L.K * c.norm_eps)) * W(ctx, "g_norm.weight") + W(ctx, "g_norm.bias")
  o = (o + flat((r * k * W(ctx, "r_k")):sum(-1, true) * v)) * g
  return lin(ctx, o, "o_proj")
end

-- cache.state [B, H, K, V]; the token shift cache.shift [B, 1, d]
function rwkv7.state_bytes(L, c) return L.H * L.K * L.V * 4, c.hidden_size * 4 end

-- the GLA count 7·K·V per head plus the low-rank term's 4·K·V (a_tᵀS, b_t·(…)): 11·d·value_dim/H
function rwkv7.flops(L, c) return 11 * c.hidden_size * L.vd / L.H end

-- ---- the block: LayerNorms with bias, pre_norm on layer 0, the channel mix -----------------------------------
-- channel mix: value(relu(key(x + δ ⊙ x_k))²) with its own token shift (the block's cache)
local function channel_mix(ctx, x)
  local kx = x + token_shift(ctx, "ffn_shift", x) * W(ctx, "ffn.x_k")
  return hb.linear(hb.linear(kx, W(ctx, "ffn.key.weight")):relu():square(), W(ctx, "ffn.value.weight"))
end

rwkv7.block = {
  declare = function(add, i, cfg, mixer)
    local d = cfg.hidden_size
    local function norm(name)
      add(name .. ".weight", { d }, "ones")
      if cfg.norm_bias then add(name .. ".bias", { d }, "zeros") end
    end
    if cfg.norm_first and i == 0 then norm("pre_norm") end
    norm("attn_norm")
    mixer()
    norm("ffn_norm")
    local e = profiles(i, cfg).r10 ^ 4
    add("ffn.x_k", { d }, fill(function(n) return 1 - (n / d) ^ e end))
    add("ffn.key.weight", { cfg._ffn, d }, orthogonal(1))
    add("ffn.value.weight", { d, cfg._ffn }, "zeros")
  end,
  forward = function(ctx, h, mix)
    local c = ctx.m.config
    local function norm(name, x)
      return layer_norm(x, W(ctx, name .. ".weight"), c.norm_bias and W(ctx, name .. ".bias") or nil, c.norm_eps)
    end
    if c.norm_first and ctx.i == 0 then h = norm("pre_norm", h) end
    h = h + mix(norm("attn_norm", h))
    return h + channel_mix(ctx, norm("ffn_norm", h))
  end,
  -- the channel mix's token shift, cache.blocks[i].ffn_shift [B, 1, d]
  state_bytes = function(cfg) return cfg.hidden_size * 4 end,
}

-- the final LayerNorm, model.norm.{weight, bias}
rwkv7.final_norm = {
  declare = function(add, d, cfg)
    add("weight", { d }, "ones")
    if cfg.norm_bias then add("bias", { d }, "zeros") end
  end,
  forward = function(ctx, h)
    local c = ctx.m.config
    return layer_norm(h, W(ctx, "weight"), c.norm_bias and W(ctx, "bias") or nil, c.norm_eps)
  end,
}

registry.register("rwkv7", rwkv7)
return rwkv7

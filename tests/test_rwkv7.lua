-- test_rwkv7.lua — RWKV-7 (lua/hyblua/mixers/rwkv7.lua) beyond the fla fixture. fla's own initialisation
-- zeroes o_proj and the channel mix's value, so in tests/fixtures/fla_next/rwkv7 no layer adds anything
-- to the residual stream; what the layers compute is checked here:
--   * fla's initialisation: the deterministic parameters equal the fixture's (made by fla), the orthogonal
--     ones are orthogonal with fla's gains, the embedding U(−1e−4, 1e−4)
--   * tests/data/rwkv7_fla (random weights, pure and hybrid): logits, loss and every gradient against the
--     float64 transcription of fla's model (tests/scripts/rwkv7_fla_ref.py), in chunk and recurrent modes
--   * float64 finite differences of whole blocks (LayerNorms, time mix, channel mix: every parameter, the
--     input, v_first in and out) at T = 70 (a chunk of 64 and a partial one), with decays at both ends of
--     RWKV-7's range (e^{−0.6065·σ}: near 1, and its floor 0.545) and â near 0 and near 1 (where the floor
--     meets â ≈ 1 the transition diag(e^w) − κ̂(κ̂⊙â)ᵀ has negative eigenvalues), in both modes
--   * random configurations (head sizes, value_dim, switches, hybrids): chunk == recurrent (logits and
--     gradients), step-by-step decode and prefill + decode == the forward, cache bytes == hb.eval.efficiency
--   * hybrids train, decode, save and load; l2_warp's gradient (any model type); the config rules
local hb = require "hyblua"
local T = dofile("tests/tap.lua")

local function maxabs(t) return t:abs():max():item() end
local function relerr(a, b) return maxabs(a - b) / math.max(maxabs(b), 1e-30) end

-- random weights with no term trivially 0 or 1 (as tests/scripts/rwkv7_fla_gen.lua); `bias` overrides the
-- LoRA biases: name pattern → function(n) (0-based channel) for the decay / â regimes
local function randomize(m, bias)
  hb.no_grad(function()
    for name, p in m:named_parameters() do
      local s = p:shape()
      local t
      if name:match("embeddings") then t = hb.randn(table.unpack(s))
      elseif name:match("norm%.weight$") then t = hb.randn(table.unpack(s)) * 0.2 + 1
      elseif name:match("bias$") then t = hb.randn(table.unpack(s)) * 0.3
      elseif name:match("%.x_[rwkvag]$") or name:match("ffn%.x_k$") then t = hb.rand(table.unpack(s))
      elseif name:match("k_k$") then t = hb.randn(table.unpack(s)) * 0.3 + 0.7
      elseif name:match("k_a$") then t = hb.randn(table.unpack(s)) * 0.3 + 1
      elseif name:match("r_k$") then t = hb.randn(table.unpack(s)) * 0.3
      else t = hb.randn(table.unpack(s)) / math.sqrt(s[#s]) end
      for pat, f in pairs(bias or {}) do
        if name:match(pat) then
          local v = {}
          for n = 1, s[1] do v[n] = f(n - 1) end
          t = hb.tensor(v)
        elseif bias and name:match(pat:gsub("bias%$$", "weight$")) then
          t = t * 0.1 -- small LoRA outputs, so the bias decides the regime
        end
      end
      p:copy_(t)
    end
  end)
  return m
end

local base = { model_type = "rwkv7", hidden_size = 32, head_dim = 16, num_hidden_layers = 3, vocab_size = 64,
  hidden_ratio = 2, decay_low_rank_dim = 8, gate_low_rank_dim = 12, a_low_rank_dim = 8, v_low_rank_dim = 6 }
local function with(t)
  local c = {}
  for k, v in pairs(base) do c[k] = v end
  for k, v in pairs(t or {}) do c[k] = v end
  return c
end

-- ---- fla's initialisation ------------------------------------------------------------------------------------
do
  local dir = T.fixtures .. "/fla_next/rwkv7"
  local ref = hb.io.load_safetensors(dir .. "/model.safetensors")
  local m = hb.models.new(hb.io.read_json(dir .. "/config.json"), { seed = 3 })
  local exact, ortho, worst_e, worst_o, why = 0, 0, 0, 0, ""
  local orth_names = { "r_proj%.weight$", "k_proj%.weight$", "v_proj%.weight$", "ffn%.key%.weight$", "lora%.2%.weight$",
                       "^lm_head%.weight$" }
  for name, p in m:named_parameters() do
    local r = ref[name]
    local is_orth = false
    for _, pat in ipairs(orth_names) do is_orth = is_orth or name:match(pat) ~= nil end
    if is_orth then
      -- orthonormal columns (rows ≥ cols) times fla's gain: Wᵀ W = g² I, g² = |W_fla|_F² / cols
      local s = p:shape()
      local g2 = (r * r):sum():item() / s[2]
      local G = p:t():matmul(p) / g2
      local I = hb.zeros(s[2], s[2])
      hb.no_grad(function() for j = 1, s[2] do I:set(1, j, j) end end)
      local e = maxabs(G - I)
      if e > worst_o then worst_o, why = e, name end
      ortho = ortho + 1
    elseif name ~= "model.embeddings.weight" then
      local e = maxabs(p - r) / math.max(1, maxabs(r))
      if e > worst_e then worst_e = e end
      exact = exact + 1
    end
  end
  T.ok(exact == 52 and worst_e <= 1e-6, "fla's init: token-shift mixes, k_k, k_a, r_k, LoRA biases, group-norm weights, " ..
    "zeros and norms equal the fixture's (made by fla)", string.format("%d tensors, worst %.2e", exact, worst_e))
  T.ok(ortho == 16 and worst_o <= 1e-5, "fla's init: r/k/v projections, channel-mix key, LoRA up-projections and the LM head " ..
    "are orthogonal with fla's gains", string.format("%d tensors, worst |WᵀW/g² − I| %.2e at %s", ortho, worst_o, why))
  local e = m.params["model.embeddings.weight"]
  T.ok(maxabs(e) <= 1e-4 and maxabs(e) > 0.9e-4 and math.abs(e:mean():item()) < 1e-6, "fla's init: embeddings U(−1e−4, 1e−4)")
  -- a LoRA whose rank exceeds its output: orthonormal rows, gain 0.1·√(rank/out)
  local m2 = hb.models.new(with { hidden_size = 16, decay_low_rank_dim = 32, num_hidden_layers = 1 }, { seed = 4 })
  local w = m2.params["model.layers.0.attn.w_lora.lora.2.weight"]
  local G = w:matmul(w:t()) / (0.01 * 2)
  local I = hb.zeros(16, 16)
  hb.no_grad(function() for j = 1, 16 do I:set(1, j, j) end end)
  T.ok(maxabs(G - I) < 1e-5, "fla's init: a wide LoRA matrix has orthonormal rows times 0.1·√(32/16)",
    string.format("%.2e", maxabs(G - I)))
end

-- ---- against the float64 transcription of fla (tests/data/rwkv7_fla) ----------------------------------------
for _, name in ipairs { "pure", "hybrid", "variant" } do
  local dir = "tests/data/rwkv7_fla/" .. name
  local refs = hb.io.load_safetensors(dir .. "/refs.safetensors")
  for _, mode in ipairs { "chunk", "recurrent" } do
    local m = hb.load_pretrained(dir):set_mode(mode)
    local le = relerr(hb.no_grad(function() return m:forward(refs.input_ids) end), refs.logits)
    local loss = m:loss(refs.input_ids)
    local lerr = math.abs(loss:item() - refs.loss:item()) / math.abs(refs.loss:item())
    loss:backward()
    local worst, wname, count = 0, "", 0
    for pn, p in m:named_parameters() do
      local e = relerr(p.grad, refs["grad." .. pn])
      if e > worst then worst, wname = e, pn end
      count = count + 1
    end
    T.ok(le <= 2e-5 and lerr <= 1e-6 and worst <= 1e-4, string.format("fla transcription, %s [%s] (%s): logits, loss, %d gradients",
      name, mode, hb.schedule.describe(m.config), count),
      string.format("logits %.2e, loss %.2e, worst gradient %.2e at %s", le, lerr, worst, wname))
  end
end

-- ---- float64 finite differences of whole blocks ------------------------------------------------------------
-- block i of m run alone in float64: out = block(h) with the layer's mixer, v_first from `vfirst` (layer
-- i > 0) or left by layer 0; loss = Σ out ⊙ R1 (+ Σ v_first ⊙ R2 for layer 0)
local function block_gradcheck(m, i, mode, tag)
  local rwkv7 = hb.models.mixers.rwkv7
  local layer = m.layers[i + 1]
  local P, names = {}, {}
  for name, p in m:named_parameters() do
    if name:sub(1, #layer.block_prefix) == layer.block_prefix then
      P[name] = p:detach():double():requires_grad(true)
      names[#names + 1] = name
    end
  end
  local B, Tn, d = 1, 70, m.config.hidden_size
  local h = (hb.randn(B, Tn, d, "float64")):requires_grad(true)
  local vf = i > 0 and (hb.randn(B, Tn, layer.vd, "float64") * 0.5):requires_grad(true) or nil
  local R1, R2 = hb.randn(B, Tn, d, "float64"), hb.randn(B, Tn, layer.vd, "float64")
  local function f()
    local prepared = { v_first = vf }
    local ctx = { m = m, i = i, W = P, mode = mode, prepared = prepared, layer = layer, prefix = layer.prefix }
    local bctx = { m = m, i = i, W = P, mode = mode, prepared = prepared, layer = layer, prefix = layer.block_prefix }
    local out = rwkv7.block.forward(bctx, h, function(x) return rwkv7.forward(ctx, x, layer.opts) end)
    local l = (out * R1):sum()
    if i == 0 then l = l + (prepared.v_first * R2):sum() end
    return l
  end
  f():backward()
  local inputs = {}
  for _, n in ipairs(names) do inputs[#inputs + 1] = { n, P[n] } end
  inputs[#inputs + 1] = { "input", h }
  if vf then inputs[#inputs + 1] = { "v_first", vf } end
  -- per tensor x with gradient g: directions u = g/|g| and a random unit vector; the 4-point central
  -- difference (8(L(x+εu) − L(x−εu)) − (L(x+2εu) − L(x−2εu))) / 12ε against ⟨g, u⟩, relative to
  -- max(|g|, 1e−2) (|L| is in the hundreds: below that its rounding, ~1e−13/ε, dominates). ε = 1e−4: the
  -- channel mix's relu² has a jump in its second derivative, so larger steps pick up O(ε) errors.
  local worst, wname = 0, ""
  for _, it in ipairs(inputs) do
    local x = it[2]
    local gn = math.sqrt(x.grad:square():sum():item())
    local r = hb.randn(x:shape(), "float64")
    for _, u in ipairs { x.grad / math.max(gn, 1e-300), r / math.sqrt(r:square():sum():item()) } do
      local ana, eps = (x.grad * u):sum():item(), 1e-4
      local function at(s)
        hb.no_grad(function() x:add_(u * (s * eps)) end)
        local l = hb.no_grad(function() return f():item() end)
        hb.no_grad(function() x:add_(u * (-s * eps)) end)
        return l
      end
      local num = (8 * (at(1) - at(-1)) - (at(2) - at(-2))) / (12 * eps)
      local e = math.abs(num - ana) / math.max(gn, 1e-2)
      if e > worst then worst, wname = e, it[1] end
    end
  end
  T.diag(string.format("block %d, %s, %s: worst %.2e at %s", i, tag, mode, worst, wname))
  T.ok(worst < 1e-6, string.format("float64 finite differences, block %d (%s, %s): %d parameters, the input%s", i, tag, mode,
    #names, vf and ", v_first" or " and v_first out"), string.format("worst rel err %.2e at %s", worst, wname))
end

do
  local cfg = with { num_hidden_layers = 2, head_dim = 8, value_dim = 64 }
  hb.manual_seed(11)
  -- decay regime: w_lora bias ±8 by channel (log decay ≈ −2e−4, or its floor −0.6065: decay ≈ 1 or 0.545),
  -- â regime: a_lora bias ∓8 (â ≈ 0 or 1)
  local edges = randomize(hb.models.new(cfg), {
    ["w_lora%.lora%.2%.bias$"] = function(n) return n % 2 == 0 and -8 or 8 end,
    ["a_lora%.lora%.2%.bias$"] = function(n) return n % 3 == 0 and 8 or -8 end,
  })
  local plain = randomize(hb.models.new(cfg))
  for _, mode in ipairs { "chunk", "recurrent" } do
    for i = 0, 1 do
      block_gradcheck(edges, i, mode, "decays near 1 and at 0.545, â near 0 and 1")
      block_gradcheck(plain, i, mode, "random")
    end
  end
end

-- ---- random configurations: chunk == recurrent, decoding, cache bytes ----------------------------------------
local configs = {
  { "H=2 K=16", with {} },
  { "H=4 K=8, value_dim 2·d", with { head_dim = 8, value_dim = 64 } },
  { "H=1 K=32, no pre_norm, no norm bias, F.normalize, tied", with { head_dim = 32, norm_first = false, norm_bias = false,
    fuse_norm = false, tie_word_embeddings = true } },
  { "num_heads only, fla's default LoRA widths", with { head_dim = hb.io.null, num_heads = 4, decay_low_rank_dim = hb.io.null,
    gate_low_rank_dim = hb.io.null, a_low_rank_dim = hb.io.null, v_low_rank_dim = hb.io.null } },
  { "hybrid LAL", with { attn = { layers = { 1 }, num_heads = 2 } } },
  { "hybrid ALL, value_dim per layer", with { value_dim = { 32, 64, 64 }, attn = { layers = { 0 }, num_heads = 4, num_kv_heads = 2 } } },
}
for k, c in ipairs(configs) do
  hb.manual_seed(20 + k)
  local m = randomize(hb.models.new(c[2]))
  local ids = hb.randint(0, 64, 2, 70)
  local out, grads = {}, {}
  for _, mode in ipairs { "chunk", "recurrent" } do
    m:set_mode(mode)
    out[mode] = hb.no_grad(function() return m:forward(ids) end)
    for _, p in m:named_parameters() do p:zero_grad() end
    m:loss(ids):backward()
    grads[mode] = {}
    for name, p in m:named_parameters() do grads[mode][name] = p.grad:clone() end
  end
  local ge = 0
  for name, g in pairs(grads.chunk) do ge = math.max(ge, relerr(g, grads.recurrent[name])) end
  local le = relerr(out.chunk, out.recurrent)
  T.ok(le <= 1e-5 and ge <= 1e-4, "chunk == recurrent: " .. c[1], string.format("logits %.2e, gradients %.2e", le, ge))
  -- step by step, and a prefill of 33 tokens then steps
  m:set_mode("chunk")
  local full, scale = out.chunk, maxabs(out.chunk)
  local cache, worst, nb = m:new_cache(2), 0, {}
  for t = 1, 70 do
    worst = math.max(worst, maxabs(m:step(ids:narrow(2, t, 1), cache) - full:select(2, t)) / scale)
    nb[t] = cache:nbytes()
  end
  local c2 = m:new_cache(2)
  local e2 = maxabs(m:prefill(ids:narrow(2, 1, 33), c2) - full:select(2, 33)) / scale
  for t = 34, 70 do e2 = math.max(e2, maxabs(m:step(ids:narrow(2, t, 1), c2) - full:select(2, t)) / scale) end
  T.ok(worst <= 1e-5 and e2 <= 1e-5, "decoding == the forward: " .. c[1], string.format("steps %.2e, prefill + steps %.2e", worst, e2))
  local eff = hb.eval.efficiency(m, { N = 70 })
  local hybrid = m.config.attn ~= hb.io.null
  T.ok(nb[70] == 2 * eff.cache_bytes_at_N and (hybrid or nb[1] == nb[70]), "cache bytes == hb.eval.efficiency: " .. c[1],
    string.format("%d → %d bytes, efficiency %d per row", nb[1], nb[70], eff.cache_bytes_at_N))
end

-- ---- hybrids: training, generation, save and load -------------------------------------------------------------
do
  hb.manual_seed(5)
  local m = hb.models.new(with { num_hidden_layers = 4, attn = hb.schedule.ratio(3, { num_heads = 2 }) })
  T.is(hb.schedule.describe(m.config), "LLLA", "a 3:1 RWKV-7 hybrid")
  local ids = hb.randint(0, 64, 4, 40)
  local opt = hb.optim.AdamW(m:parameters(), { lr = 3e-3 })
  local first, last
  for s = 1, 12 do
    opt:zero_grad()
    local l = m:loss(ids)
    first = first or l:item()
    last = l:item()
    l:backward()
    opt:step()
  end
  T.ok(last < first - 0.5, "the hybrid trains (12 AdamW steps on one batch)", string.format("%.4f → %.4f", first, last))
  local gen = m:generate(ids:narrow(1, 1, 2):narrow(2, 1, 10), 6)
  local full = hb.no_grad(function() return m:forward(ids:narrow(1, 1, 1):narrow(2, 1, 10)) end)
  T.ok(#gen == 2 and #gen[1] == 6 and gen[1][1] == full:select(2, 10):argmax(2):get(1), "the hybrid generates (greedy)")
  local tmp = os.tmpname()
  os.remove(tmp)
  m:save_pretrained(tmp)
  local saved = hb.io.read_json(tmp .. "/config.json")
  local m2 = hb.load_pretrained(tmp)
  local same = maxabs(hb.no_grad(function() return m2:forward(ids) end) - hb.no_grad(function() return m:forward(ids) end))
  T.ok(same == 0 and saved.attn.layers[1] == 3 and #saved.value_dim == 4 and saved.num_heads == 2 and saved.head_dim == 16,
    "save_pretrained → load_pretrained: the attn spec, value_dim list and heads as fla's config writes them; same logits")
  os.execute("rm -rf '" .. tmp .. "'")
end

-- ---- l2_warp: the value is unchanged, the gradient gets fla's max-logit term (any model type) ------------------
for _, cfg in ipairs {
  with { num_hidden_layers = 2 },
  { model_type = "gla", hidden_size = 16, num_hidden_layers = 1, vocab_size = 16, num_heads = 2, use_l2warp = true },
} do
  hb.manual_seed(7)
  local m = randomize(hb.models.new(cfg))
  m.config.use_l2warp = true
  local B, Tn = 2, 10
  local ids = hb.randint(0, m.config.vocab_size, B, Tn)
  local function head_grad(warp)
    m.config.use_l2warp = warp
    for _, p in m:named_parameters() do p:zero_grad() end
    local l = m:loss(ids)
    l:backward()
    return l:item(), m.params["lm_head.weight"].grad:clone()
  end
  local lw, gw = head_grad(true)
  local ln, gn = head_grad(false)
  -- expected difference: Σ over all B·T positions of factor·m·h at the arg-max row, factor = 1e-4 / (B·T)
  local h = hb.no_grad(function() return m:hidden(ids) end)
  local logits = hb.no_grad(function() return hb.linear(h, m.params["lm_head.weight"]) end)
  local D = hb.zeros(m.config.vocab_size, m.config.hidden_size)
  hb.no_grad(function()
    for b = 1, B do
      for t = 1, Tn do
        local row = logits:select(1, b):select(1, t)
        local j = row:argmax(1):item() + 1
        D:narrow(1, j, 1):add_(h:narrow(1, b, 1):narrow(2, t, 1):view(1, -1) * (1e-4 / (B * Tn) * row:get(j)))
      end
    end
  end)
  local e = relerr(gw - gn, D)
  T.ok(lw == ln and e < 1e-2, string.format("l2_warp (%s): same loss value, lm_head gradient + factor·max logit at the arg-max",
    cfg.model_type), string.format("loss %.7f vs %.7f, gradient difference rel err %.2e", lw, ln, e))
end

-- ---- config ---------------------------------------------------------------------------------------------------
do
  local c = hb.models.normalize_config { model_type = "rwkv7" }
  T.ok(c.head_dim == 64 and c.num_heads == 32 and #c.value_dim == 24 and c.value_dim[1] == 2048 and c._ffn == 8192 and
    c.use_l2warp == true and c.norm_eps == 1e-5 and c.hidden_act == "sqrelu" and c.architectures[1] == "RWKV7ForCausalLM",
    "defaults: fla's RWKV7Config (head_dim 64 → 32 heads, value_dim list, channel mix 4·d, l2_warp, sqrelu)")
  local n = hb.models.normalize_config { model_type = "rwkv7", num_heads = 16, head_dim = hb.io.null, value_dim = 4096,
    decay_low_rank_dim = hb.io.null, gate_low_rank_dim = hb.io.null, a_low_rank_dim = hb.io.null, v_low_rank_dim = hb.io.null,
    hidden_ratio = 3.5, num_hidden_layers = 2 }
  local h = hb.models.normalize_config { model_type = "rwkv7", hidden_size = 256, gate_low_rank_dim = hb.io.null }
  T.ok(n.head_dim == 128 and n.value_dim[2] == 4096 and n._rank.w == 224 and n._rank.g == 224 and n._rank.a == 224 and
    n._rank.v == 160 and n._ffn == 7168 and n.decay_low_rank_dim == hb.io.null and h._rank.g == 64,
    "derived: head_dim from num_heads, value_dim from one width, fla's layer LoRA widths (max(32, round(c·√d·K/64/32)·32), " ..
    "Python's round: 2.5 → 2), int(d·hidden_ratio) rounded up to 32", string.format("%d %d %d %d %d", n._rank.w, n._rank.g, n._rank.a, n._rank.v, n._ffn))
  for _, bad in ipairs {
    { { num_heads = 3 }, "config: num_heads 3 disagrees with hidden_size / head_dim = 2 (fla's RWKV-7 layer takes its heads from head_dim)" },
    { { head_dim = 12 }, "config: hidden_size 32 is not divisible by head_dim 12" },
    { { head_dim = hb.io.null }, "config: rwkv7: head_dim or num_heads must be set" },
    { { value_dim = 48 }, "config: value_dim[0] = 48 must be an integer multiple of hidden_size 32" },
    { { value_dim = { 32, 64 } }, "config: value_dim has 2 entries but num_hidden_layers is 3" },
    { { value_dim = { 32, 64, 32 } }, "config: value_dim[1] = 64 differs from value_dim[0] = 32 (every RWKV-7 layer mixes in layer 0's values)" },
    { { hidden_act = "relu" }, "config: hidden_act = 'relu' is not implemented by hyblua (use 'sqrelu')" },
    { { attn_mode = "fast" }, "config: attn_mode must be 'chunk' or 'fused_recurrent' (got 'fast')" },
    { { norm_bias = 1 }, "config: 'norm_bias' must be true or false (got 1)" },
    { { expand_v = 2 }, "config: 'expand_v' is not a field of rwkv7 configs" },
  } do
    T.raises(function() hb.models.new(with(bad[1])) end, bad[2], "config error: " .. bad[2]:sub(9, 60))
  end
  T.ok(pcall(hb.models.new, with { value_dim = { 32, 64, 32 }, attn = { layers = { 1 }, num_heads = 2 } }),
    "value_dim may differ on attention layers")
end

T.done()

-- tests/bench/packing_quality.lua [docs|sentences] [STEPS] — packed vs unpacked training on the same token
-- budget (docs/recipes.md, "Packed documents"): a GatedDeltaNet 3:1 hybrid (hidden 64, 4 layers) on the
-- bundled sample, BPE-512 with an eos between documents, B = 8, T = 128, STEPS steps (default 80), trained
-- packed, unpacked, then packed again (the first run warms the machine), each scored by hb.eval.lm over
-- 8192 unpacked validation tokens. `docs`: one document per address (split "\n\n"); `sentences`: the
-- sample cut at every ". " (short documents). The prepared data is kept in runs/cache/.
local hb = require "hyblua"
local mode = arg[1] or "docs"
local split = ({ docs = "\n\n", sentences = ". " })[mode]
if not split then error("packing_quality: the first argument must be docs or sentences, got " .. mode, 0) end
local data = "runs/cache/packing-" .. mode
if not hb.data.is_dir(data) then
  hb.data.prepare { input = "tests/data/sample/texts", out = data, val_fraction = 0.15, seed = 1234, bpe_vocab = 512,
    split = split }
end
local d = hb.data.load(data)
local V, eos = d.meta.vocab_size, d.meta.tokenizer.eos_id
print(string.format("%s: %d training documents, %d tokens, eos %d", mode, d.meta.train.documents, d.train:len(), eos))
local B, T, steps = 8, 128, tonumber(arg[2] or 80)
for _, packing in ipairs { true, false, true } do
  local model = hb.models.new({ model_type = "gated_deltanet", hidden_size = 64, num_hidden_layers = 4, vocab_size = V,
    num_heads = 2, head_dim = 32, attn = hb.schedule.ratio(3, { num_heads = 2 }) }, { seed = 0 })
  local batch = packing and function(k) return hb.data.packed_batch(d.train, B, T, 0, k, { eos = eos }) end
    or function(k) return d.train:batch(B, T, 0, k) end
  local t0 = hb.now()
  hb.train { model = model, batch = batch, steps = steps, lr = 3e-3, warmup = 10, progress = false }
  local dt = hb.now() - t0
  local ev = hb.eval.lm(model, d.val, { T = T, max_tokens = 8192 })
  print(string.format("packing=%s steps=%d B=%d T=%d train %.1fs (%.0f tok/s incl. batch building) val loss %.4f",
    tostring(packing), steps, B, T, dt, steps * B * T / dt, ev.loss))
end

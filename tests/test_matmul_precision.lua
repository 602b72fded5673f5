-- test_matmul_precision.lua — hb.set_matmul_precision("fp32" | "bf16") / hb.matmul_precision(): the switch
-- round-trips, fp32 results are untouched by default and after a round trip, bf16 changes float32
-- products (forward and backward) by a bf16-sized amount and never float64 ones (gradient checks stay
-- float64), a fixture model's bf16 logits stay within 2e-2 of fla's, bad values are rejected naming the
-- allowed ones, and hb.train's matmul_precision option applies to the run and is restored afterwards.
-- Decode products (≤ 8 rows, bf16 mode): bf16 weights from the copy kept with the storage × unrounded float32
-- activations, equal to gemm_bf16 on bf16-exact activations, through a weight view at an offset, the same bits
-- at 1 and 2 threads, the copy remade after an in-place write (copy_); fp32 decode (kernels/gemv.c) vs float64.
-- The kernels themselves: tests/test_gemm_bf16.c, tests/test_gemv.c.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")

local function rel(a, b) return ((a:double() - b:double()):abs():max() / b:double():abs():max()):item() end
local function same(a, b) return (a:double() - b:double()):abs():max():item() == 0 end

T.is(hb.matmul_precision(), "fp32", "default precision is fp32")

hb.manual_seed(3)
local x = hb.randn(3, 70, 200)            -- batched input: the one-gemm fast path
local w = hb.randn(96, 200)               -- a weight used as Wᵀ (transposed view, no copy)
local a, b = hb.randn(5, 33, 200), hb.randn(5, 200, 41)   -- batched matmul: one gemm per batch
local y32 = hb.linear(x, w)
local m32 = a:matmul(b)
local y64 = hb.linear(x:double(), w:double())
T.ok(rel(y32, y64) < 1e-5, "fp32 linear matches float64", rel(y32, y64))

hb.set_matmul_precision("bf16")
T.is(hb.matmul_precision(), "bf16", "set bf16")
local y16 = hb.linear(x, w)
local m16 = a:matmul(b)
local e1, e2 = rel(y16, y64), rel(m16, a:double():matmul(b:double()))
T.ok(e1 > 1e-5 and e1 < 1e-2, "bf16 linear differs from float64 by a bf16-sized amount", e1)
T.ok(e2 > 1e-5 and e2 < 1e-2, "bf16 batched matmul differs from float64 by a bf16-sized amount", e2)
T.is(y16:dtype(), "float32", "bf16 mode still returns float32 tensors")
T.ok(same(hb.linear(x:double(), w:double()), y64), "float64 products are unchanged in bf16 mode")

-- backward products: gradients of a float32 graph change slightly, float64 gradients not at all
local function grads(dtype)
  local xx = x:to(dtype):clone():requires_grad(true) -- fresh leaves (x and w themselves stay constants)
  local ww = w:to(dtype):clone():requires_grad(true)
  local loss = (hb.linear(xx, ww):tanh() * hb.linear(xx, ww)):sum()
  loss:backward()
  return xx.grad, ww.grad
end
local gx16, gw16 = grads("float32")
local gx64b, gw64b = grads("float64")

hb.set_matmul_precision("fp32")
T.is(hb.matmul_precision(), "fp32", "set back to fp32")
T.ok(same(hb.linear(x, w), y32) and same(a:matmul(b), m32), "fp32 results after a bf16 round trip are bit-identical")
local gx32, gw32 = grads("float32")
local gx64, gw64 = grads("float64")
local ex, ew = rel(gx16, gx32), rel(gw16, gw32)
T.ok(ex > 1e-6 and ex < 2e-2 and ew > 1e-6 and ew < 2e-2, "bf16 backward: input and weight gradients within bf16 error",
  string.format("%.2e %.2e", ex, ew))
T.ok(same(gx64b, gx64) and same(gw64b, gw64), "float64 gradients (gradient checks) are identical in both modes")

-- a model forward: logits within bf16 error of fp32
local m = hb.models.new({ model_type = "gated_deltanet", hidden_size = 64, num_hidden_layers = 2, num_heads = 2,
  head_dim = 16, vocab_size = 128, attn = hb.schedule.ratio(1, { num_heads = 2 }) }, { seed = 5 })
local ids = hb.randint(0, 128, { 2, 48 }, "int64")
local l32 = hb.no_grad(function() return m:forward(ids) end)
hb.set_matmul_precision("bf16")
local l16 = hb.no_grad(function() return m:forward(ids) end)
hb.set_matmul_precision("fp32")
local el = rel(l16, l32)
T.ok(el > 0 and el < 3e-2, "model logits in bf16 mode within 3e-2 of fp32", el)

-- a fixture model (fla's own numbers): bf16 logits and loss within a bf16-sized distance of the reference
local fdir = T.fixtures .. "/fla/gated_deltanet_3to1"
if io.open(fdir .. "/refs.safetensors") then
  local refs = hb.io.load_safetensors(fdir .. "/refs.safetensors")
  hb.set_matmul_precision("bf16")
  local fm = hb.load_pretrained(fdir)
  local fl = hb.no_grad(function() return fm:forward(refs.input_ids) end)
  local floss = fm:loss(refs.input_ids):item()
  hb.set_matmul_precision("fp32")
  local le = (fl - refs.logits):abs():max():item() / refs.logits:abs():max():item()
  local lo = math.abs(floss - refs.loss:item()) / refs.loss:item()
  T.ok(le > 1e-5 and le < 2e-2 and lo < 1e-3, "fixture gated_deltanet_3to1 in bf16: logits and loss within bf16 error",
    string.format("logits max-rel %.2e, loss rel %.2e", le, lo))
else
  T.ok(false, "fixture gated_deltanet_3to1 present at " .. T.fixtures)
end

-- bad values
T.raises(function() hb.set_matmul_precision("fp16") end, 'unknown precision \'fp16\' (expected "fp32" or "bf16")',
  "an unknown precision names the allowed ones")
T.raises(function() hb.set_matmul_precision() end, "string expected", "a missing argument is an error")
T.is(hb.matmul_precision(), "fp32", "a rejected value leaves the setting alone")

-- hb.train{matmul_precision=}: applies during the run, restored afterwards
local seen
local function tiny_train(prec)
  seen = nil
  return hb.train { model = m, steps = 2, lr = 1e-3, progress = false, matmul_precision = prec,
    batch = function(k) seen = hb.matmul_precision(); return hb.tensor(hb.train_utils.synthetic_batch(k, 2, 17, 128), "int64") end }
end
local r = tiny_train("bf16")
T.ok(r.step == 2 and seen == "bf16" and hb.matmul_precision() == "fp32", "hb.train runs in bf16 and restores fp32",
  tostring(seen))
T.raises(function() tiny_train("half") end, 'hb.train: matmul_precision must be "fp32" or "bf16" (got half)',
  "hb.train rejects an unknown matmul_precision")
T.is(hb.matmul_precision(), "fp32", "still fp32 after the rejected run")

-- decode products (at most 8 rows, weights as nn.Linear's W): in bf16 mode the weights are streamed from
-- a bfloat16 copy kept with their storage and multiplied with the float32 activations unrounded: the
-- float64 product of the unrounded activations with the bf16-rounded weights (a bf16 safetensors round trip
-- rounds as the kernel does), up to float32 summation error. gemm_bf16 (which rounds the activations too)
-- is ~1e-3 away from it, so the test tells the two paths apart.
hb.manual_seed(9)
local wd = hb.randn(520, 384)                                     -- 199680 floats: a copy is kept
local tmpw = os.tmpname()
hb.io.save_safetensors(tmpw, { w = wd }, {}, { dtype = "bf16" })
local wb = hb.io.load_safetensors(tmpw).w:double()                -- bf16(W), exactly
os.remove(tmpw)
local xd = hb.randn(16, 384)
hb.set_matmul_precision("bf16")
local full = hb.linear(xd, wd)                                    -- 16 rows: gemm_bf16, activations rounded
local worst, bits1 = 0, {}
for M = 1, 8 do
  local y = hb.linear(xd:narrow(1, 1, M), wd)
  worst = math.max(worst, rel(y, hb.linear(xd:narrow(1, 1, M):double(), wb)))
  bits1[M] = y
end
T.ok(worst < 1e-5, "bf16 decode (M 1..8) = unrounded activations × bf16 weights", worst)
local eg = rel(full:narrow(1, 1, 8), hb.linear(xd:narrow(1, 1, 8):double(), wb))
T.ok(eg > 1e-4, "… which gemm_bf16 (16 rows, activations rounded too) is not", eg)
T.ok(same(bits1[1], bits1[8]:narrow(1, 1, 1)), "bf16 decode: a row's bits do not depend on the batch size")
T.ok(rel(bits1[3], hb.linear(xd:narrow(1, 1, 3):double(), wd:double())) > 1e-5,
  "bf16 decode uses bf16 weights (differs from the float64 product)")
-- activations are not rounded: a row that is not exact in bf16 gives the bf16-weight × fp32 product
local xr = hb.randn(2, 384)
local yr = hb.linear(xr, wd)
local xr16 = hb.linear(xr, wd) -- same call twice: the copy is reused, same bits
T.ok(same(yr, xr16), "bf16 decode is deterministic across calls (the kept copy is reused)")
-- a weight view at an offset (rows 11..310) uses the copy at that offset
local wv = wd:narrow(1, 11, 300)
T.ok(same(hb.linear(xd:narrow(1, 1, 4), wv), bits1[4]:narrow(2, 11, 300)),
  "bf16 decode through a row view of the weight (storage offset)")
-- the thread count does not change the bits
local nt = hb.get_num_threads()
hb.set_num_threads(1)
local y1 = hb.linear(xr, wd)
hb.set_num_threads(2)
local y2 = hb.linear(xr, wd)
hb.set_num_threads(nt)
T.ok(same(y1, y2) and same(y1, yr), "bf16 decode: the same bits at 1 and 2 threads")
-- an in-place write to the weight (an optimizer step, copy_) makes the copy stale: it is remade
local wnew = hb.randn(520, 384)
wd:copy_(wnew)
local yn = hb.linear(xd:narrow(1, 1, 5), wd)
hb.set_matmul_precision("fp32")
local yn32 = hb.linear(xd:narrow(1, 1, 5), wnew)
local en = rel(yn, yn32)
T.ok(en > 1e-6 and en < 1e-2, "after wd:copy_(new) bf16 decode uses the new weights", en)
T.ok(same(hb.linear(xd:narrow(1, 1, 5), wd), yn32), "fp32 decode after bf16 mode is the plain fp32 product")
-- fp32 decode (kernels/gemv.c) against float64
local e32 = rel(hb.linear(xr, wd), hb.linear(xr:double(), wd:double()))
T.ok(e32 < 1e-5, "fp32 decode (M ≤ 8) matches float64", e32)

T.done()

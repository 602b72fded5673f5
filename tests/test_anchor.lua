-- test_anchor.lua — the MQAR anchor's fast version (the full one is `make check-anchors`): the 2-layer d 64
-- Transformer, trained by recipes/mqar_anchor.lua --tiny, must learn MQAR well beyond chance on every pair
-- count, and --check must fail when the threshold is not reached.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local tmp = os.tmpname(); os.remove(tmp); hb.data.mkdir(tmp)
local run = T.run

local ok, out = run("./hyblua recipes/mqar_anchor.lua --tiny --check --out " .. tmp .. "/a")
T.ok(ok and out:find("→ PASS", 1, true), "the tiny anchor passes its check (3× chance on every pair count)", out:sub(-600))
local r = hb.io.read_json(tmp .. "/a/anchor.json")
local run1 = r.runs[1]
T.ok(r.passed == true and run1.by_kv.kv2 and run1.by_kv.kv4, "anchor.json records the run per pair count")
T.ok(run1.by_kv.kv4 >= 5 * r.chance, "4 pairs: accuracy well beyond chance",
  string.format("%.3f vs chance %.4f", run1.by_kv.kv4, r.chance))
T.ok(run1.train_loss_last < math.log(64) - 1, "training lowered the loss well below uniform guessing",
  tostring(run1.train_loss_last))
-- an unreachable threshold: --check exits 1 and says FAIL
ok, out = run("./hyblua recipes/mqar_anchor.lua --tiny --check --set anchor.steps=5 --set anchor.threshold=0.99 --out " .. tmp .. "/b")
T.ok(not ok and out:find("→ FAIL", 1, true), "--check fails below the threshold", out:sub(-400))
ok, out = run("./hyblua recipes/mqar_anchor.lua --set anchor.vocab_size=32 --out " .. tmp .. "/c")
T.ok(not ok and out:find("anchor.vocab_size (32) must exceed anchor.seq_len (64)", 1, true), "a vocabulary ≤ seq_len is refused", out)
os.execute("rm -rf '" .. tmp .. "'")
T.done()

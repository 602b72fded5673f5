-- test_recipes.lua — the recipes users run, at --tiny size: gdn_3to1 (trains, reports bpb and recall,
-- writes metrics/config/model/results), hybrid.lua for another mixer, and the paper grid (31→13 cells
-- at tiny size: csv, markdown table, SVG plots; a second invocation skips finished cells).
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local tmp = os.tmpname(); os.remove(tmp); os.execute("mkdir -p " .. tmp)
local function run(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end
local function exists(p) local f = io.open(p); if f then f:close(); return true end return false end

local ok, out = run("./hyblua recipes/gdn_3to1.lua --tiny --out " .. tmp .. "/gdn --set data.cache=" .. tmp .. "/cache")
T.ok(ok and out:find("bits/byte", 1, true), "gdn_3to1 --tiny runs and reports bits/byte", out:sub(-600))
T.ok(exists(tmp .. "/gdn/metrics.jsonl") and exists(tmp .. "/gdn/config.yaml") and exists(tmp .. "/gdn/results.json"),
  "writes metrics.jsonl, the effective config.yaml and results.json")
local okm, m = pcall(hb.load_pretrained, tmp .. "/gdn/model")
T.ok(okm and m.config.model_type == "gated_deltanet" and hb.schedule.describe(m.config):find("A", 1, true),
  "the saved model is an fla checkpoint of a GatedDeltaNet hybrid", m)
local res = hb.io.read_json(tmp .. "/gdn/results.json")
T.ok(res.val_bpb and res.val_bpb > 0 and res.recall_probe and res.recall_probe >= 0, "results.json has bpb and the recall probe")
local cfg = hb.config.load(tmp .. "/gdn/config.yaml")
T.is(cfg.tiny, true, "the effective config records the --tiny flag")

ok, out = run("./hyblua recipes/hybrid.lua --mixer retnet --ratio 2 --tiny --out " .. tmp .. "/ret --set data.cache=" .. tmp .. "/cache")
T.ok(ok and out:find("retnet_2to1", 1, true), "hybrid.lua --mixer retnet --ratio 2 runs", out:sub(-400))
ok, out = run("./hyblua recipes/gdn_3to1.lua --tiny --set train.lrr=1 --out " .. tmp .. "/bad")
T.ok(not ok and out:find("unknown config key 'train.lrr' (did you mean 'train.lr'?)", 1, true), "an unknown config key is a clear error", out)

ok, out = run("./hyblua recipes/paper_grid.lua --tiny --out " .. tmp .. "/grid --set data.cache=" .. tmp .. "/cache")
T.ok(ok and out:find("grid: 13 cells", 1, true), "paper_grid --tiny runs all cells", out:sub(-800))
local n = 0
for _ in io.lines(tmp .. "/grid/grid.csv") do n = n + 1 end
T.is(n, 14, "grid.csv has a header and 13 rows")
T.ok(exists(tmp .. "/grid/grid.md") and exists(tmp .. "/grid/recall_vs_attention.svg") and exists(tmp .. "/grid/lm_vs_ratio.svg")
  and exists(tmp .. "/grid/recall_vs_state.svg"), "markdown table and three SVG plots written")
local f = io.open(tmp .. "/grid/recall_vs_attention.svg"); local svg = f:read("a"); f:close()
T.ok(svg:find("<svg", 1, true) and svg:find("gated_deltanet", 1, true), "SVG plot has content and a legend")
ok, out = run("./hyblua recipes/paper_grid.lua --tiny --out " .. tmp .. "/grid --set data.cache=" .. tmp .. "/cache")
local cached = select(2, out:gsub("%(cached%)", ""))
T.ok(ok and cached == 13, "re-running the grid skips finished cells", out:sub(-300))
os.execute("rm -rf " .. tmp)
T.done()

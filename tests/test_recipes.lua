-- test_recipes.lua — the recipes users run, at --tiny size: gdn_3to1 (trains, reports bpb and recall,
-- writes metrics/config/model/results; a second run of the finished run adds no duplicate records),
-- hybrid.lua for another mixer, a ratio without attention layers (warned), `hyblua plot` (rendered
-- to PNG), and the paper grid (9 cells × 2 seeds at tiny size: csv and markdown with mean ± 95% interval,
-- per-seed values, loss and per-kv MQAR columns and the findings table; SVG plots rendered to PNG and checked
-- for size; a second invocation skips finished cells; --jobs 2 gives bit-identical cells; a cell whose lock
-- another process holds is skipped).
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local tmp = os.tmpname(); os.remove(tmp); os.execute("mkdir -p " .. tmp)
local run, exists = T.run, T.exists

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

-- the PNG's width and height from its IHDR chunk (nil if the file is not a PNG)
local function png_size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local head = f:read(24)
  local size = f:seek("end")
  f:close()
  if not head or #head < 24 or head:sub(1, 8) ~= "\137PNG\r\n\26\n" then return nil end
  return string.unpack(">I4", head, 17), string.unpack(">I4", head, 21), size
end

-- a finished run run again: it resumes at the last step, re-validates, and its log keeps one record per step
local function records(path)
  local seen, dup, n = {}, nil, 0
  for line in io.lines(path) do
    local r = hb.io.decode_json(line)
    -- an event ({event = "resume", ...}) is no step record, but it counts: an unchanged re-run logs none
    local key = r.step .. (r.event and "e" .. n or r.val_loss and "v" or "t")
    if seen[key] then dup = key end
    seen[key] = true
    n = n + 1
  end
  return n, dup
end
local n1 = records(tmp .. "/gdn/metrics.jsonl")
ok, out = run("./hyblua recipes/gdn_3to1.lua --tiny --out " .. tmp .. "/gdn --set data.cache=" .. tmp .. "/cache")
local n2, dup = records(tmp .. "/gdn/metrics.jsonl")
T.ok(ok and out:find("resuming from", 1, true) and n2 == n1 and dup == nil,
  "re-running a finished run appends no duplicate records to metrics.jsonl", string.format("%d → %d records, duplicate %s", n1, n2, tostring(dup)))

T.ok(hb.plot.have_rsvg(), "rsvg-convert is installed (Debian librsvg2-bin, .ci/deps.sh) to render the plots")
ok, out = run("./hyblua plot " .. tmp .. "/gdn/metrics.jsonl " .. tmp .. "/gdn/metrics.jsonl --names a,b --out " .. tmp .. "/curves.png")
local w, h, bytes = png_size(tmp .. "/curves.png")
T.ok(ok and w == 720 and h == 1080 and bytes > 20000, "hyblua plot: three panels rendered to a 720x1080 PNG",
  string.format("%s %s %s %s", tostring(w), tostring(h), tostring(bytes), out))
ok, out = run("./hyblua plot " .. tmp .. "/gdn/metrics.jsonl --out " .. tmp .. "/curves.svg --metrics loss")
local fs = io.open(tmp .. "/curves.svg"); local csvg = fs and fs:read("a") or ""; if fs then fs:close() end
T.ok(ok and csvg:find("training loss (smoothed", 1, true) and csvg:find(">gdn<", 1, true) and csvg:find("(validation)", 1, true),
  "hyblua plot: SVG with the smoothed loss, a legend named after the run, validation points", out)

ok, out = run("./hyblua recipes/gdn_3to1.lua --tiny --ratio 6 --set train.steps=1 --out " .. tmp .. "/r6 --set data.cache=" .. tmp .. "/cache")
T.ok(ok and out:find("warning: 6:1 gives no attention layer at 4 layers (LLLL)", 1, true), "a ratio without attention layers is warned about", out)

ok, out = run("./hyblua recipes/hybrid.lua --mixer retnet --ratio 2 --tiny --out " .. tmp .. "/ret --set data.cache=" .. tmp .. "/cache")
T.ok(ok and out:find("retnet_2to1", 1, true), "hybrid.lua --mixer retnet --ratio 2 runs", out:sub(-400))
ok, out = run("./hyblua recipes/gdn_3to1.lua --tiny --set train.lrr=1 --out " .. tmp .. "/bad")
T.ok(not ok and out:find("unknown config key 'train.lrr' (did you mean 'train.lr'?)", 1, true), "an unknown config key is a clear error", out)

ok, out = run("./hyblua recipes/paper_grid.lua --tiny --out " .. tmp .. "/grid --set data.cache=" .. tmp .. "/cache")
T.ok(ok and out:find("grid: 9 cells × 2 seed(s)", 1, true), "paper_grid --tiny runs all cells at 2 seeds", out:sub(-800))
T.ok(out:find("kda_3to1__s1", 1, true), "the tiny grid includes a new mixer (kda)", out:sub(-800))
local n = 0
for _ in io.lines(tmp .. "/grid/grid.csv") do n = n + 1 end
T.is(n, 10, "grid.csv has a header and 9 rows (one per cell)")
n = 0
for _ in io.lines(tmp .. "/grid/grid_seeds.csv") do n = n + 1 end
T.is(n, 19, "grid_seeds.csv has a header and 18 rows (one per cell and seed)")
T.ok(exists(tmp .. "/grid/grid.md") and exists(tmp .. "/grid/recall_vs_attention.svg") and exists(tmp .. "/grid/lm_vs_ratio.svg")
  and exists(tmp .. "/grid/recall_vs_state.svg"), "markdown table and three SVG plots written")
local f = io.open(tmp .. "/grid/recall_vs_attention.svg"); local svg = f:read("a"); f:close()
T.ok(svg:find("<svg", 1, true) and svg:find("gated_deltanet", 1, true) and svg:find(">Transformer<", 1, true),
  "SVG plot has content and a legend")
T.ok(svg:find('stroke="#e4e4e4"', 1, true) and svg:find(">100%<", 1, true) and svg:find(">0%<", 1, true),
  "recall vs attention: gridlines, nice percent ticks, the Transformer's share past the axis break")
f = io.open(tmp .. "/grid/recall_vs_state.svg"); local svg3 = f:read("a"); f:close()
T.ok(svg3:find(">pure<", 1, true) and svg3:find(">3:1<", 1, true) and svg3:find(" kB<", 1, true),
  "recall vs memory: labelled points, byte ticks")
for _, name in ipairs { "recall_vs_attention", "lm_vs_ratio", "recall_vs_state" } do
  local pw, ph, pbytes = png_size(tmp .. "/grid/" .. name .. ".png")
  T.ok(pw == 760 and ph == 440 and pbytes > 15000, name .. ".png rendered at 760x440",
    string.format("%s x %s, %s bytes", tostring(pw), tostring(ph), tostring(pbytes)))
end
local gmd = io.open(tmp .. "/grid/grid.md"):read("a")
T.ok(gmd:find("| LM val loss |", 1, true) and gmd:find("| MQAR 4 kv |", 1, true), "grid.md has the LM loss and per-kv MQAR columns", gmd:sub(1, 300))
local header = io.open(tmp .. "/grid/grid.csv"):read("l")
T.ok(header:find(",lm_val_loss,", 1, true) and header:find(",mqar_kv4,", 1, true), "grid.csv has them too", header)
T.ok(gmd:find("## Findings", 1, true) and gmd:find("| 2 | LM nearly flat across ratios |", 1, true)
  and gmd:find("What this grid cannot decide:", 1, true) and gmd:find("## Placement at 6 layers", 1, true),
  "grid.md has the findings table, its limits and the placement table", gmd:sub(-1500))
-- the csv's mean and interval agree with its per-seed values (recomputed here)
do
  local cols, row = {}, {}
  local lines = {}
  for l in io.lines(tmp .. "/grid/grid.csv") do lines[#lines + 1] = l end
  for c in lines[1]:gmatch("[^,]+") do cols[#cols + 1] = c end
  local i = 0
  for v in (lines[2] .. ","):gmatch("([^,]*),") do i = i + 1; row[cols[i]] = v end
  local a, b = row.lm_val_bpb_per_seed:match("^([^;]+);([^;]+)$")
  a, b = tonumber(a), tonumber(b)
  local m = (a + b) / 2
  local half = 12.706204736174696 * math.abs(a - b) / math.sqrt(2) / math.sqrt(2) -- t(.975, 1)·sd/√2
  T.ok(math.abs(tonumber(row.lm_val_bpb) - m) < 1e-5 and math.abs(tonumber(row.lm_val_bpb_ci95) - half) < 1e-4 * math.max(1, half),
    "grid.csv: mean and 95% half-width match the per-seed values", lines[2])
  T.ok(gmd:find(string.format("%.4f ± %.4f", tonumber(row.lm_val_bpb), tonumber(row.lm_val_bpb_ci95)), 1, true),
    "grid.md shows mean ± half-width")
end
ok, out = run("./hyblua recipes/paper_grid.lua --tiny --out " .. tmp .. "/grid --set data.cache=" .. tmp .. "/cache")
local cached = select(2, out:gsub("%(cached%)", ""))
T.ok(ok and cached == 18, "re-running the grid skips finished cells", out:sub(-300))

-- --jobs 2: the same cells as child processes give the same records, bit for bit (seconds aside)
local sub = " --set grid.mixers=[kda] --set grid.transformer=false --set data.cache=" .. tmp .. "/cache"
ok, out = run("./hyblua recipes/paper_grid.lua --tiny --jobs 2 --out " .. tmp .. "/grid2" .. sub)
T.ok(ok and out:find("2 jobs", 1, true) and out:find("grid: 2 cells × 2 seed(s)", 1, true), "paper_grid --jobs 2 runs", out:sub(-800))
do
  local same, checked = true, 0
  for _, cell in ipairs { "kda_pure__s0", "kda_pure__s1", "kda_3to1__s0", "kda_3to1__s1" } do
    local a = hb.io.read_json(tmp .. "/grid/cells/" .. cell .. ".json")
    local b = hb.io.read_json(tmp .. "/grid2/cells/" .. cell .. ".json")
    for _, k in ipairs { "lm_val_loss_init", "lm_val_loss", "lm_val_bpb", "lm_train_loss_last", "mqar_acc", "mqar_train_loss_last", "params" } do
      checked = checked + 1
      if a[k] ~= b[k] then same = false; T.diag(cell .. " " .. k .. ": " .. tostring(a[k]) .. " vs " .. tostring(b[k])) end
    end
  end
  T.ok(same and checked == 28, "--jobs 2 (1 thread per child) gives bit-identical cell results to the serial run")
end
-- a cell-seed whose lock another process holds is skipped, not trained twice; released, it is trained
do
  hb.data.mkdir(tmp .. "/grid3/cells")
  local held = hb.proc.lock(tmp .. "/grid3/cells/kda_pure__s0.lock")
  ok, out = run("./hyblua recipes/paper_grid.lua --tiny --out " .. tmp .. "/grid3 --set grid.ratios=[0]" .. sub)
  T.ok(ok and out:find("kda_pure__s0                   skipped: being trained by another process", 1, true)
    and not exists(tmp .. "/grid3/cells/kda_pure__s0.json") and exists(tmp .. "/grid3/cells/kda_pure__s1.json"),
    "a locked cell-seed is skipped and the others trained", out:sub(-600))
  held:release()
  ok, out = run("./hyblua recipes/paper_grid.lua --tiny --jobs 2 --out " .. tmp .. "/grid3 --set grid.ratios=[0]" .. sub)
  T.ok(ok and exists(tmp .. "/grid3/cells/kda_pure__s0.json"), "released, it is trained by the next invocation", out:sub(-600))
end
ok, out = run("./hyblua recipes/paper_grid.lua --tiny --set grid.seed_list=[1,1] --out " .. tmp .. "/bad")
T.ok(not ok and out:find("config key 'grid.seed_list': seed 1 is listed twice", 1, true), "a repeated seed is a clear error", out)
ok, out = run("./hyblua recipes/paper_grid.lua --tiny --set grid.only=nope --out " .. tmp .. "/bad")
T.ok(not ok and out:find("grid.only: no cell-seed 'nope' in this grid", 1, true), "an unknown grid.only is a clear error", out)
os.execute("rm -rf " .. tmp)
T.done()

-- test_recipes.lua — the recipes users run, at --tiny size: gdn_3to1 (trains, reports bpb and recall,
-- writes metrics/config/model/results; a second run of the finished run adds no duplicate records),
-- hybrid.lua for another mixer, a ratio without attention layers (warned), `hyblua plot` (rendered
-- to PNG), and the paper grid (31→13 cells at tiny size: csv and markdown with loss and per-kv MQAR
-- columns, SVG plots rendered to PNG and checked for size; a second invocation skips finished cells).
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
T.ok(ok and out:find("grid: 13 cells", 1, true), "paper_grid --tiny runs all cells", out:sub(-800))
local n = 0
for _ in io.lines(tmp .. "/grid/grid.csv") do n = n + 1 end
T.is(n, 14, "grid.csv has a header and 13 rows")
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
ok, out = run("./hyblua recipes/paper_grid.lua --tiny --out " .. tmp .. "/grid --set data.cache=" .. tmp .. "/cache")
local cached = select(2, out:gsub("%(cached%)", ""))
T.ok(ok and cached == 13, "re-running the grid skips finished cells", out:sub(-300))
os.execute("rm -rf " .. tmp)
T.done()

-- recipes/grid_merge.lua — one paper_grid output directory out of two grids run on different tasks with the
-- same cells (an LM-only grid, grid.tasks=[lm], and an MQAR-only grid, grid.tasks=[mqar]), so that one report
-- (paper_grid --set grid.plot_only=true) judges the findings on both tasks.
--
--   hyblua recipes/grid_merge.lua --lm results_lm --mqar results_mqar            # in place: into results_mqar
--   hyblua recipes/grid_merge.lua --lm results_lm --mqar results_mqar --out results
--
-- For every cell-seed record in <mqar>/cells/ the merged record is the LM grid's record of the same
-- cell-seed (so the structure columns — parameters, state bytes — are those of the LM model, as a grid with
-- both tasks records them) with every mqar_* field of the MQAR record added, seconds summed, and lm_from /
-- mqar_from naming the two directories. The two records must describe the same cell: name, mixer, ratio,
-- seed, layer string and attention layers, else it is an error naming the field. A cell-seed of the MQAR grid
-- that the LM grid lacks is an error (with --set partial=true it is copied unmerged and listed); every record
-- is checked before any is written, so an error leaves the output as it was. A record of
-- the MQAR grid that already has LM fields is left as it is (re-running is harmless). The MQAR models stay
-- where they were trained (<mqar>/ckpt: recipes/mqar_longer.lua reads them there), so run mqar_longer with
-- --grid <mqar> or merge in place.
local hb = require "hyblua"
local K = hb.config.key

local defaults = hb.config.declare {
  lm = K("", "an LM-only paper_grid output directory (its cells/*.json)"),
  mqar = K("", "an MQAR-only paper_grid output directory (its cells/*.json)"),
  out = K("", "where the merged cells/*.json go (default: the --mqar directory, in place)"),
  partial = K(false, "copy MQAR cell-seeds the LM grid lacks, unmerged, instead of stopping"),
  same = K({ "name", "mixer", "ratio", "seed", "layers", "attn_layers" },
    "fields the LM and the MQAR record of a cell-seed must agree on (else: not the same cell)"),
}
local cfg = hb.config.parse_args(arg, defaults, { description = "merge an LM-only and an MQAR-only paper_grid run " ..
  "of the same cells into one set of cell records" })
local function exists(p) return hb.io.file_kind(p) ~= nil end
for _, k in ipairs({ "lm", "mqar" }) do
  if cfg[k] == "" then hb.user_error("grid_merge: --" .. k .. " DIR is required") end
  if not exists(cfg[k] .. "/cells") then
    hb.user_error("grid_merge: " .. cfg[k] .. "/cells not found (is --" .. k .. " a paper_grid output directory?)")
  end
end
local out = cfg.out ~= "" and cfg.out or cfg.mqar
hb.data.mkdir(out)
hb.data.mkdir(out .. "/cells")

local names = hb.data.list_dir(cfg.mqar .. "/cells")
table.sort(names)
local merged, kept, missing, recs = 0, 0, {}, {}
for _, f in ipairs(names) do
  if f:match("^.+__s%d+%.json$") then
    local q = hb.io.read_json(cfg.mqar .. "/cells/" .. f)
    local lpath = cfg.lm .. "/cells/" .. f
    local rec
    if q.lm_val_bpb ~= nil then
      rec = q -- already has its LM part
      kept = kept + 1
    elseif not exists(lpath) then
      if not cfg.partial then
        hb.user_error(string.format("grid_merge: %s has no LM record %s (train it in the LM grid, or --set partial=true)",
          f, lpath))
      end
      missing[#missing + 1] = f
      rec = q
    else
      local l = hb.io.read_json(lpath)
      if l.lm_val_bpb == nil then hb.user_error("grid_merge: " .. lpath .. " has no LM result (lm_val_bpb)") end
      for _, k in ipairs(cfg.same) do
        if hb.io.encode_json({ v = l[k] }) ~= hb.io.encode_json({ v = q[k] }) then
          hb.user_error(string.format("grid_merge: %s: the LM and MQAR records differ in %s (%s vs %s): not the same cell",
            f, k, hb.io.encode_json({ v = l[k] }), hb.io.encode_json({ v = q[k] })))
        end
      end
      rec = l
      for k, v in pairs(q) do if k:match("^mqar_") then rec[k] = v end end
      rec.seconds = (l.seconds or 0) + (q.seconds or 0)
      rec.lm_from, rec.mqar_from = cfg.lm, cfg.mqar
      merged = merged + 1
    end
    recs[#recs + 1] = { f = f, rec = rec }
  end
end
-- every record checked before any is written: an error leaves the output as it was
for _, r in ipairs(recs) do hb.io.write_json(out .. "/cells/" .. r.f, r.rec) end
io.stderr:write(string.format("grid_merge: %d merged, %d already complete, %d without an LM record%s → %s/cells\n",
  merged, kept, #missing, #missing > 0 and (" (" .. table.concat(missing, ", ") .. ")") or "", out))

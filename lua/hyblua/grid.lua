-- hyblua/grid.lua — evaluations of a finished paper_grid run from the models it saved (hb.grid).
--
-- recipes/paper_grid.lua keeps every cell-seed's final checkpoint: ckpt/<cell>__s<seed>-lm/ckpt-<step> for the LM
-- task, ckpt/<cell>__s<seed>-mqar[-lr<lr>]/ckpt-<step> for MQAR (the rate the cell kept). The recipes that
-- test those models afterwards (recipes/mqar_longer.lua: MQAR beyond the training length; recipes/niah_grid.lua:
-- RULER's needle-in-a-haystack on the LM models) share this module:
--
--   hb.grid.model_dir(grid, record, task)   the final checkpoint of a cell-seed's "lm" or "mqar" model, or nil and
--                                           the directory looked in
--   hb.grid.evaluate{grid, subdir, task, evaluate, who [, needs] [, settings]}
--       for every cell-seed record in <grid>/cells (copies marked same_as have no model of their own), loads the
--       model and calls evaluate(model, record) → {tests = {{<keys>, <metrics>}, ...}, <fields>}, stored as
--       <grid>/<subdir>/<cell>__s<seed>.json (a re-run reads the stored file instead); `needs(record)` returns a
--       reason to skip a record (e.g. "no MQAR result"). → the per-cell-seed results and the skipped ones.
--       settings: the options the results depend on (a table), stored with each result; a stored result of
--       other settings is an error naming the file and the differing keys, never silently reused.
--   hb.grid.settings_diffs(recorded, now [, prefix]): hb.config.diff (lua/hyblua/config.lua), under the name it
--       had here first.
--   hb.grid.report{grid, name, recs, skipped, title, intro, keys, metrics, column [, base]}
--       writes <grid>/<name>.md and .csv: per cell (Transformer last, cells by attention share) the mean ±
--       95% t-interval over seeds of every metric at every test (tests matched by position), then per mixer and
--       metric its hybrid − pure difference with the Welch interval. keys: the test fields that name a test
--       (CSV columns), metrics: {{field, label}, ...}, column(test) → the markdown column title, base =
--       {field, label}: an optional record field shown before the tests (e.g. the trained length's accuracy).
local hb = require "hyblua.binding"
local S = require "hyblua.stats"
local data = require "hyblua.data"
local models = require "hyblua.models"
local cfgm = require "hyblua.config"
local user_error = require("hyblua.errors").user_error
local M = {}

local function exists(p) return hb.io.file_kind(p) ~= nil end -- a file or a directory (a stat; never opens)

function M.model_dir(grid, r, task)
  local base = string.format("%s/ckpt/%s__s%d-%s", grid, r.name, r.seed, task)
  if task == "mqar" and r.mqar_sweep ~= nil then base = base .. string.format("-lr%g", r.mqar_lr) end
  if not exists(base) then return nil, base end
  local best, best_step
  for _, n in ipairs(data.list_dir(base)) do
    local step = tonumber(n:match("^ckpt%-(%d+)$"))
    if step and (not best_step or step > best_step) then best, best_step = n, step end
  end
  return best and (base .. "/" .. best) or nil, base
end

M.settings_diffs = cfgm.diff

-- a stored result, checked against the settings of this run (results stored before settings were: not checked)
local function read_result(path, settings, who)
  local r = hb.io.read_json(path)
  if settings and r.settings then
    local d = cfgm.diff(r.settings, settings)
    if #d > 0 then
      user_error(string.format("%s: %s was computed with other settings than this run's: %s. Remove it (or its " ..
        "directory) to recompute, or run with its settings", who, path, table.concat(d, ", ")))
    end
  end
  return r
end

function M.evaluate(o)
  local G, who = o.grid, o.who
  if not exists(G .. "/cells") then user_error(who .. ": " .. G .. "/cells not found (is --grid a paper_grid output directory?)") end
  local names = data.list_dir(G .. "/cells")
  table.sort(names)
  data.mkdir(G .. "/" .. o.subdir)
  local recs, skipped = {}, {}
  for _, f in ipairs(names) do
    local cellseed = f:match("^(.+__s%d+)%.json$")
    if cellseed then
      local r = hb.io.read_json(G .. "/cells/" .. f)
      local outp = G .. "/" .. o.subdir .. "/" .. cellseed .. ".json"
      local why = not r.same_as and not exists(outp) and o.needs and o.needs(r)
      if r.same_as then -- a copy of another cell's stack: it has no model of its own
      elseif exists(outp) then recs[#recs + 1] = read_result(outp, o.settings, who)
      elseif why then skipped[#skipped + 1] = cellseed .. " (" .. why .. ")"
      else
        local dir, base = M.model_dir(G, r, o.task)
        if not dir then skipped[#skipped + 1] = cellseed .. " (no checkpoint in " .. base .. ")"
        else
          local t0 = hb.now()
          local res = o.evaluate(models.load_pretrained(dir), r)
          res.name, res.mixer, res.ratio, res.seed = r.name, r.mixer, r.ratio, r.seed
          res.attn_share, res.layers, res.model = r.attn_share, r.layers, dir
          res.seconds = hb.now() - t0
          res.settings = o.settings
          hb.io.write_json(outp, res)
          recs[#recs + 1] = res
        end
      end
    end
  end
  for _, s in ipairs(skipped) do io.stderr:write("skipped: " .. s .. "\n") end
  if #recs == 0 then user_error(who .. ": no cell-seed of " .. G .. " could be evaluated") end
  return recs, skipped
end

local function pm(v)
  if not v or #v == 0 then return "-" end
  local ci = S.ci(v, 0.95)
  if not ci.half then return string.format("%.3f", ci.mean) end
  return string.format("%.3f ± %.3f", ci.mean, ci.half)
end

function M.report(o)
  local recs, keys, metrics = o.recs, o.keys, o.metrics
  -- per cell: the values over seeds of each metric at each test (c.at[metric][test] = {values})
  local cells, by, tests = {}, {}, {}
  for _, r in ipairs(recs) do
    local c = by[r.name]
    if not c then
      c = { name = r.name, mixer = r.mixer, ratio = r.ratio, share = r.attn_share, layers = r.layers, seeds = {}, base = {}, at = {} }
      by[r.name] = c
      cells[#cells + 1] = c
    end
    c.seeds[#c.seeds + 1] = r.seed
    if o.base and type(r[o.base.field]) == "number" then c.base[#c.base + 1] = r[o.base.field] end
    for i, t in ipairs(r.tests) do
      tests[i] = tests[i] or t
      for _, m in ipairs(metrics) do
        c.at[m.field] = c.at[m.field] or {}
        c.at[m.field][i] = c.at[m.field][i] or {}
        if type(t[m.field]) == "number" then table.insert(c.at[m.field][i], t[m.field]) end
      end
    end
  end
  table.sort(cells, function(a, b)
    if a.mixer ~= b.mixer then
      if a.mixer == "transformer" or b.mixer == "transformer" then return b.mixer == "transformer" end
      return a.mixer < b.mixer
    end
    return (a.share or 0) < (b.share or 0)
  end)
  local function vals(c, m, i) return c.at[m.field] and c.at[m.field][i] or {} end
  local md = { "# " .. o.title, "", o.intro, "" }
  local head = { "cell", "layers", "seeds" }
  if o.base then head[#head + 1] = o.base.label end
  for _, t in ipairs(tests) do head[#head + 1] = o.column(t) end
  md[#md + 1] = "| " .. table.concat(head, " | ") .. " |"
  md[#md + 1] = "|" .. string.rep("---|", #head)
  local ch = { "name", "mixer", "ratio", "attn_share", "n_seeds" }
  for _, k in ipairs(keys) do ch[#ch + 1] = k end
  for _, m in ipairs(metrics) do
    ch[#ch + 1] = m.field .. "_mean"; ch[#ch + 1] = m.field .. "_ci95"; ch[#ch + 1] = m.field .. "_per_seed"
  end
  local csv = { table.concat(ch, ",") }
  for _, c in ipairs(cells) do
    local row = { c.name, c.layers or "", tostring(#c.seeds) }
    if o.base then row[#row + 1] = pm(c.base) end
    for i, t in ipairs(tests) do
      local shown = {}
      for _, m in ipairs(metrics) do shown[#shown + 1] = pm(vals(c, m, i)) end
      row[#row + 1] = table.concat(shown, " / ")
      local line = { c.name, c.mixer, tostring(c.ratio), tostring(c.share or ""), tostring(#c.seeds) }
      for _, k in ipairs(keys) do line[#line + 1] = tostring(t[k]) end
      for _, m in ipairs(metrics) do
        local v = vals(c, m, i)
        local ci = S.ci(v, 0.95)
        local per = {}
        for k, x in ipairs(v) do per[k] = string.format("%.6g", x) end
        line[#line + 1] = #v > 0 and string.format("%.6g", ci.mean) or ""
        line[#line + 1] = ci.half and string.format("%.6g", ci.half) or ""
        line[#line + 1] = table.concat(per, ";")
      end
      csv[#csv + 1] = table.concat(line, ",")
    end
    md[#md + 1] = "| " .. table.concat(row, " | ") .. " |"
  end
  -- per mixer and metric: its hybrid − its pure cell at each test (Welch interval)
  for _, m in ipairs(metrics) do
    md[#md + 1] = ""
    md[#md + 1] = "Hybrid − pure per mixer" .. (#metrics > 1 and (", " .. m.label) or "") ..
      " (Welch 95% interval; above 0: attention adds " .. (m.adds or "recall") .. " at that length):"
    md[#md + 1] = ""
    local h2 = { "mixer", "hybrid" }
    for _, t in ipairs(tests) do h2[#h2 + 1] = o.column(t, true) end
    md[#md + 1] = "| " .. table.concat(h2, " | ") .. " |"
    md[#md + 1] = "|" .. string.rep("---|", #h2)
    for _, p in ipairs(cells) do
      if p.mixer ~= "transformer" and p.ratio == 0 then
        for _, h in ipairs(cells) do
          if h.mixer == p.mixer and h.ratio ~= 0 then
            local row = { p.mixer, h.name }
            for i in ipairs(tests) do
              local a, b = vals(h, m, i), vals(p, m, i)
              if #a >= 2 and #b >= 2 then
                local w = S.welch(a, b, 0.95)
                row[#row + 1] = string.format("%+.3f [%+.3f, %+.3f]", w.diff, w.lo, w.hi)
              elseif #a >= 1 and #b >= 1 then row[#row + 1] = string.format("%+.3f", S.mean(a) - S.mean(b))
              else row[#row + 1] = "-" end
            end
            md[#md + 1] = "| " .. table.concat(row, " | ") .. " |"
          end
        end
      end
    end
  end
  if #o.skipped > 0 then md[#md + 1] = ""; md[#md + 1] = "Not evaluated: " .. table.concat(o.skipped, "; ") .. "." end
  cfgm.write_text(o.grid .. "/" .. o.name .. ".md", table.concat(md, "\n") .. "\n")
  cfgm.write_text(o.grid .. "/" .. o.name .. ".csv", table.concat(csv, "\n") .. "\n")
  return cells
end

return M

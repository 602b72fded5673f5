-- hyblua/plot.lua — plots of experiment outputs as SVG (and PNG through rsvg-convert), no dependencies.
--
--   hb.plot.svg(figure) → SVG text          a figure of one or more panels (below)
--   hb.plot.save(path, figure_or_svg)       write .svg, or .png (rendered by rsvg-convert, Debian package
--                                           librsvg2-bin); returns path
--   hb.plot.read_metrics(path) → run        one metrics.jsonl of hb.train: {name, steps = {...}, loss,
--                                           lr, tok_per_s, grad_norm, tokens, val = {steps, loss}}
--                                           (a step logged twice keeps its last record)
--   hb.plot.curves(paths [, opts]) → figure training curves of one or several runs: loss (smoothed,
--                                           with validation points), learning rate, throughput
--   hb.plot.smooth(values, alpha) → list    exponential moving average with bias correction (alpha 0: none)
--   hb.plot.ticks(lo, hi [, n]) → list      "nice" tick values (1, 2, 5 × 10^k steps) within [lo, hi]
--   hb.plot.main(args)                      the `hyblua plot` command line (hyblua plot --help)
--
-- A figure is {panels = {panel, ...}, cols = 1, width = 720 (per panel), height = 360 (per panel),
-- title = nil}, or a single panel. A panel:
--   title, xlabel, ylabel      text
--   series = { {name =, color =, points = {{x, y [, label = "text"]}, ...}, line = true, markers = true,
--               dash = false, width = 2, opacity = 1}, ... }
--              y may be a list of samples (several seeds): the point is their mean, with an error bar of
--              ± one standard deviation (sample std; a single sample has no bar), or with
--              errorbars = "ci95" the 95% Student-t interval of the mean (± t_{.975,n−1}·sd/√n)
--   logx, logy                 log10 axes (values must be > 0)
--   xmin, xmax, ymin, ymax     fix the data range (the axis adds a small margin so no point sits on it)
--   xsegments = {{lo, hi [, weight]}, ...}  a broken x axis: the segments side by side (width by weight),
--              with break marks between them, e.g. hybrids at 0–0.25 and a Transformer at 1.0
--   xformat, yformat           "bytes" (kB, MB), "si" (12k, 3.4M), "percent", or a function(v) → text
--   errorbars = "sd" | "ci95"  what the bar of a point with several samples spans (default "sd")
--   legend = true              the series names, at the right of the panel
-- Ticks fall on nice values, with light gridlines; points are drawn with markers, optional labels and
-- error bars. Every error raises a user error naming what is wrong.
local hb = require "hyblua.binding"
local config = require "hyblua.config"
local user_error = require("hyblua.errors").user_error
local stats = require "hyblua.stats"

local P = {}
local place_labels

P.palette = { "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf" }

-- ---- numbers ---------------------------------------------------------------------------------------------
local function finite(x) return type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge end

-- a nice step near x: 1, 2 or 5 × 10^k
local function nice_step(x)
  local e = math.floor(math.log(x, 10))
  local f = x / 10 ^ e
  local nf = f < 1.5 and 1 or f < 3 and 2 or f < 7 and 5 or 10
  return nf * 10 ^ e
end

function P.ticks(lo, hi, n)
  n = n or 5
  if not (finite(lo) and finite(hi)) or hi < lo then user_error("hb.plot.ticks: need finite lo <= hi", 2) end
  if hi == lo then return { lo } end
  local step = nice_step((hi - lo) / math.max(1, n - 1))
  local out = {}
  local k0, k1 = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
  for k = k0, k1 do
    local v = k * step
    if math.abs(v) < step * 1e-9 then v = 0 end
    out[#out + 1] = v
  end
  return out, step
end

-- decades (and 2, 5 × when few) within [lo, hi] (lo > 0)
local function log_ticks(lo, hi)
  local out = {}
  local e0, e1 = math.floor(math.log(lo, 10)), math.ceil(math.log(hi, 10))
  local mult = (e1 - e0 <= 2) and { 1, 2, 5 } or { 1 }
  for e = e0, e1 do
    for _, m in ipairs(mult) do
      local v = m * 10 ^ e
      if v >= lo * (1 - 1e-9) and v <= hi * (1 + 1e-9) then out[#out + 1] = v end
    end
  end
  return out
end

-- trim a formatted number: 2.50 → 2.5, 3.00 → 3
local function trim(s) if s:find("%.") then s = s:gsub("0+$", ""):gsub("%.$", "") end return s end

local function si(v, unit)
  local a = math.abs(v)
  for _, p in ipairs { { 1e12, "T" }, { 1e9, "G" }, { 1e6, "M" }, { 1e3, "k" } } do
    if a >= p[1] then return trim(string.format("%.2f", v / p[1])) .. (unit and " " or "") .. p[2] .. (unit or "") end
  end
  return trim(string.format("%.2f", v)) .. (unit and " " .. unit or "")
end

-- a tick label: enough decimals for the step, SI suffixes for big numbers
local function formatter(fmt, step)
  if type(fmt) == "function" then return fmt end
  if fmt == "bytes" then return function(v) return si(v, "B") end end
  if fmt == "si" then return function(v) return si(v) end end
  if fmt == "percent" then return function(v) return trim(string.format("%.1f", 100 * v)) .. "%" end end
  return function(v)
    if math.abs(v) >= 1e4 then return si(v) end
    local dec = step and math.max(0, -math.floor(math.log(step, 10) + 1e-9)) or 3
    return trim(string.format("%." .. math.min(dec, 6) .. "f", v))
  end
end

function P.smooth(values, alpha)
  alpha = alpha or 0
  if type(alpha) ~= "number" or alpha < 0 or alpha >= 1 then user_error("hb.plot.smooth: alpha must be in [0, 1)", 2) end
  local out, s, w = {}, 0, 0
  for i, v in ipairs(values) do
    s = alpha * s + (1 - alpha) * v
    w = alpha * w + (1 - alpha)
    out[i] = s / w
  end
  return out
end

-- the mean of samples and the half-width of its error bar: the sample std ("sd") or the 95% t-interval ("ci95")
local function mean_std(ys, mode)
  local n, s = #ys, 0
  for _, y in ipairs(ys) do s = s + y end
  local m = s / n
  if n < 2 then return m, nil end
  local q = 0
  for _, y in ipairs(ys) do q = q + (y - m) ^ 2 end
  local sd = math.sqrt(q / (n - 1))
  if mode == "ci95" then return m, stats.t_quantile(0.975, n - 1) * sd / math.sqrt(n) end
  return m, sd
end

local function esc(s)
  return (tostring(s):gsub("[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;" }))
end

-- ---- checking a panel -----------------------------------------------------------------------------------
local panel_keys = { "title", "xlabel", "ylabel", "series", "logx", "logy", "xmin", "xmax", "ymin", "ymax", "xsegments",
                     "xformat", "yformat", "legend", "notes", "errorbars" }
local series_keys = { "name", "color", "points", "line", "markers", "dash", "width", "opacity", "labels" }

local function check_panel(p, where)
  if type(p) ~= "table" then user_error(where .. ": a panel must be a table") end
  config.check_keys(p, panel_keys, where)
  if p.errorbars ~= nil and p.errorbars ~= "sd" and p.errorbars ~= "ci95" then
    user_error(where .. ": errorbars must be \"sd\" or \"ci95\", got " .. tostring(p.errorbars))
  end
  if type(p.series) ~= "table" then user_error(where .. ": 'series' must be a list of {name =, points = {{x, y}, ...}}") end
  for i, s in ipairs(p.series) do
    local sw = string.format("%s: series %d", where, i)
    if type(s) ~= "table" then user_error(sw .. " must be a table") end
    config.check_keys(s, series_keys, sw)
    if type(s.points) ~= "table" then user_error(sw .. ": 'points' must be a list of {x, y}") end
    for j, pt in ipairs(s.points) do
      if type(pt) ~= "table" or not finite(pt[1]) then user_error(string.format("%s: point %d needs a finite x", sw, j)) end
      local y = pt[2]
      if type(y) == "table" then
        if #y == 0 then user_error(string.format("%s: point %d has an empty list of y samples", sw, j)) end
        for _, v in ipairs(y) do if not finite(v) then user_error(string.format("%s: point %d has a non-finite y sample", sw, j)) end end
      elseif not finite(y) then
        user_error(string.format("%s: point %d needs a finite y (or a list of samples)", sw, j))
      end
      if p.logx and pt[1] <= 0 then user_error(string.format("%s: point %d has x = %s on a log axis (x must be > 0)", sw, j, pt[1])) end
      if p.logy and type(y) == "number" and y <= 0 then user_error(string.format("%s: point %d has y <= 0 on a log axis", sw, j)) end
    end
  end
  if p.xsegments then
    if type(p.xsegments) ~= "table" or #p.xsegments < 1 then user_error(where .. ": xsegments must be a list of {lo, hi [, weight]}") end
    for i, sg in ipairs(p.xsegments) do
      if type(sg) ~= "table" or not finite(sg[1]) or not finite(sg[2]) or sg[2] <= sg[1] then
        user_error(string.format("%s: xsegments[%d] must be {lo, hi} with lo < hi", where, i))
      end
      if i > 1 and sg[1] < p.xsegments[i - 1][2] then user_error(string.format("%s: xsegments must be increasing", where)) end
    end
    if p.logx then user_error(where .. ": xsegments and logx cannot be combined") end
  end
end

-- ---- drawing one panel ----------------------------------------------------------------------------------
-- the data range of one axis: [lo, hi] from the points (means and error bars), or the fixed ends
local function data_range(p, axis)
  local lo, hi = math.huge, -math.huge
  for _, s in ipairs(p.series) do
    for _, pt in ipairs(s.points) do
      if axis == 1 then
        lo, hi = math.min(lo, pt[1]), math.max(hi, pt[1])
      else
        local y = pt[2]
        if type(y) == "table" then
          local m, sd = mean_std(y, p.errorbars)
          sd = sd or 0
          lo, hi = math.min(lo, m - sd), math.max(hi, m + sd)
        else
          lo, hi = math.min(lo, y), math.max(hi, y)
        end
      end
    end
  end
  local fixlo, fixhi = p[axis == 1 and "xmin" or "ymin"], p[axis == 1 and "xmax" or "ymax"]
  if fixlo then lo = fixlo end
  if fixhi then hi = fixhi end
  if lo == math.huge then lo, hi = 0, 1 end
  return lo, hi
end

-- an axis mapping value → pixel over [a, b] pixels; margin keeps points off the axis lines
local function make_axis(lo, hi, log, a, b, flip)
  local f = log and function(v) return math.log(v, 10) end or function(v) return v end
  local flo, fhi = f(lo), f(hi)
  if fhi == flo then
    local d = flo == 0 and 1 or math.abs(flo) * 0.1
    flo, fhi = flo - d, fhi + d
  end
  local m = (fhi - flo) * 0.05
  flo, fhi = flo - m, fhi + m
  local function map(v)
    local t = (f(v) - flo) / (fhi - flo)
    return flip and (b - t * (b - a)) or (a + t * (b - a))
  end
  local dlo, dhi = flo, fhi
  if log then dlo, dhi = 10 ^ flo, 10 ^ fhi end
  return map, dlo, dhi
end

local function fmt_num(x) return string.format("%.1f", x) end

-- Point labels, placed greedily: each takes the first of eight positions around its point (right,
-- above-right, below-right, left, ...) that overlaps the fewest markers and labels already placed
-- and stays inside the plot area.
local function overlap(a, b)
  local w = math.min(a[3], b[3]) - math.max(a[1], b[1])
  local h = math.min(a[4], b[4]) - math.max(a[2], b[2])
  return (w > 0 and h > 0) and w * h or 0
end
place_labels = function(o, labels, markers, area)
  local placed = {}
  for _, lb in ipairs(labels) do
    local w, h = (utf8.len(lb.text) or #lb.text) * 5.8, 10
    local x, y = lb.x, lb.y
    local cands = {
      { x + 6, y - h / 2 }, { x + 5, y - 5 - h }, { x + 5, y + 5 }, { x - 6 - w, y - h / 2 },
      { x - 5 - w, y - 5 - h }, { x - 5 - w, y + 5 }, { x - w / 2, y - 7 - h }, { x - w / 2, y + 7 },
    }
    local best, bestscore
    for i, c in ipairs(cands) do
      local box = { c[1], c[2], c[1] + w, c[2] + h }
      local score = i * 0.01 -- prefer the earlier positions on ties
      for _, m in ipairs(markers) do score = score + overlap(box, m) end
      for _, b in ipairs(placed) do score = score + 2 * overlap(box, b) end
      local inside = overlap(box, area)
      score = score + 4 * (w * h - inside)
      if not bestscore or score < bestscore then best, bestscore = box, score end
    end
    placed[#placed + 1] = best
    o[#o + 1] = string.format('<text x="%s" y="%s" font-size="10" fill="%s">%s</text>', fmt_num(best[1]), fmt_num(best[4] - 1.5),
      lb.color, esc(lb.text))
  end
end

-- the named series of a panel (the legend's entries) and the legend's width in pixels
local function legend_of(p)
  local named = {}
  for i, s in ipairs(p.series) do if s.name then named[#named + 1] = { s, i } end end
  if p.legend == false or #named == 0 then return named, 0 end
  local lw = 0
  for _, e in ipairs(named) do lw = math.max(lw, (utf8.len(tostring(e[1].name)) or 0) * 7) end
  return named, math.min(lw + 34, 240)
end

-- draw panel p into the box (ox, oy, W, H); lw: the legend width (the same for a figure's panels, so
-- their plot areas line up)
local function draw_panel(o, p, ox, oy, W, H, lw)
  local named = legend_of(p)
  local legend = p.legend ~= false and #named > 0
  local t_top, t_bottom = oy + (p.title and 34 or 14), oy + H - 48
  -- y axis first: the left margin fits the longest tick label
  local ylo, yhi = data_range(p, 2)
  local Y, ydlo, ydhi = make_axis(ylo, yhi, p.logy, t_top, t_bottom, true)
  local yt, ystep
  if p.logy then yt = log_ticks(ydlo, ydhi) else yt, ystep = P.ticks(ydlo, ydhi, 6) end
  local yf = formatter(p.yformat, ystep)
  local longest = 0
  for _, v in ipairs(yt) do longest = math.max(longest, #yf(v)) end
  local m = { l = math.max(56, 7 * longest + 36), r = 16 + lw }
  local x0, x1, y0, y1 = ox + m.l, ox + W - m.r, t_top, t_bottom
  if x1 - x0 < 40 then x1 = x0 + 40 end
  -- x axis: one segment, or several side by side (a broken axis)
  local segs = {}
  if p.xsegments then
    local total, gap = 0, 14
    for _, sg in ipairs(p.xsegments) do total = total + (sg[3] or 1) end
    local avail = (x1 - x0) - gap * (#p.xsegments - 1)
    local cur = x0
    for _, sg in ipairs(p.xsegments) do
      local w = avail * (sg[3] or 1) / total
      -- a segment's range is used as given (no margin): the caller chose it around its points
      local a, b = cur, cur + w
      local lo, hi = sg[1], sg[2]
      segs[#segs + 1] = { lo = lo, hi = hi, a = a, b = b, map = function(v) return a + (v - lo) / (hi - lo) * (b - a) end }
      cur = b + gap
    end
  else
    local xlo, xhi = data_range(p, 1)
    local X, xdlo, xdhi = make_axis(xlo, xhi, p.logx, x0, x1, false)
    segs[1] = { lo = xdlo, hi = xdhi, a = x0, b = x1, map = X }
  end
  local function seg_of(x)
    for _, sg in ipairs(segs) do if x >= sg.lo and x <= sg.hi then return sg end end
    return nil
  end
  local function X(x) local sg = seg_of(x); return sg and sg.map(x) end
  -- frame, gridlines, ticks
  o[#o + 1] = string.format('<g font-size="12">')
  for _, v in ipairs(yt) do
    local py = Y(v)
    for _, sg in ipairs(segs) do
      o[#o + 1] = string.format('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#e4e4e4"/>', fmt_num(sg.a), fmt_num(py), fmt_num(sg.b), fmt_num(py))
    end
    o[#o + 1] = string.format('<text x="%s" y="%s" text-anchor="end" fill="#333">%s</text>', fmt_num(x0 - 7), fmt_num(py + 4), esc(yf(v)))
  end
  for si_, sg in ipairs(segs) do
    local xt, xstep
    if p.logx then xt = log_ticks(sg.lo, sg.hi)
    else
      local n = math.max(2, math.floor((sg.b - sg.a) / 90))
      xt, xstep = P.ticks(sg.lo, sg.hi, n)
    end
    local xf = formatter(p.xformat, xstep)
    for _, v in ipairs(xt) do
      local px = sg.map(v)
      o[#o + 1] = string.format('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#e4e4e4"/>', fmt_num(px), fmt_num(y0), fmt_num(px), fmt_num(y1))
      o[#o + 1] = string.format('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#333"/>', fmt_num(px), fmt_num(y1), fmt_num(px), fmt_num(y1 + 4))
      o[#o + 1] = string.format('<text x="%s" y="%s" text-anchor="middle" fill="#333">%s</text>', fmt_num(px), fmt_num(y1 + 17), esc(xf(v)))
    end
    -- the axis lines of this segment
    o[#o + 1] = string.format('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#333"/>', fmt_num(sg.a), fmt_num(y1), fmt_num(sg.b), fmt_num(y1))
    if si_ == 1 then
      o[#o + 1] = string.format('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#333"/>', fmt_num(sg.a), fmt_num(y0), fmt_num(sg.a), fmt_num(y1))
    end
    if si_ > 1 then -- break marks: two slanted strokes in the gap
      local gx = (segs[si_ - 1].b + sg.a) / 2
      for _, dx in ipairs { -4, 2 } do
        o[#o + 1] = string.format('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#333" stroke-width="1.5"/>',
          fmt_num(gx + dx - 3), fmt_num(y1 + 5), fmt_num(gx + dx + 3), fmt_num(y1 - 5))
      end
    end
  end
  -- labels and title
  if p.title then
    o[#o + 1] = string.format('<text x="%s" y="%s" font-size="15" font-weight="bold" fill="#111">%s</text>', fmt_num(x0), fmt_num(oy + 22), esc(p.title))
  end
  if p.xlabel then
    o[#o + 1] = string.format('<text x="%s" y="%s" text-anchor="middle" fill="#111">%s</text>', fmt_num((x0 + x1) / 2), fmt_num(y1 + 36), esc(p.xlabel))
  end
  if p.ylabel then
    local cy = (y0 + y1) / 2
    o[#o + 1] = string.format('<text x="%s" y="%s" transform="rotate(-90 %s %s)" text-anchor="middle" fill="#111">%s</text>',
      fmt_num(ox + 16), fmt_num(cy), fmt_num(ox + 16), fmt_num(cy), esc(p.ylabel))
  end
  -- series; markers and labels are collected for the label placement below
  local markers, labels = {}, {}
  for i, s in ipairs(p.series) do
    local color = s.color or P.palette[(i - 1) % #P.palette + 1]
    local width = s.width or 2
    local op = s.opacity or 1
    local pts = {}
    local run = {}
    local function flush()
      if #run > 1 and s.line ~= false then
        o[#o + 1] = string.format('<polyline fill="none" stroke="%s" stroke-width="%s" stroke-opacity="%s"%s points="%s"/>',
          color, width, op, s.dash and ' stroke-dasharray="5,3"' or "", table.concat(run, " "))
      end
      run = {}
    end
    local prev_seg
    for _, pt in ipairs(s.points) do
      local y, sd = pt[2], nil
      if type(y) == "table" then y, sd = mean_std(y, p.errorbars) end
      local sg = seg_of(pt[1])
      if sg then
        if prev_seg and sg ~= prev_seg then flush() end -- no line across an axis break
        prev_seg = sg
        local px, py = sg.map(pt[1]), Y(y)
        run[#run + 1] = fmt_num(px) .. "," .. fmt_num(py)
        pts[#pts + 1] = { px, py, sd and Y(y - sd), sd and Y(y + sd), pt.label }
      end
    end
    flush()
    for _, q in ipairs(pts) do
      if q[3] then -- error bar with caps
        o[#o + 1] = string.format('<path d="M%s %sV%sM%s %sH%sM%s %sH%s" stroke="%s" stroke-width="1.5" fill="none"/>',
          fmt_num(q[1]), fmt_num(q[3]), fmt_num(q[4]), fmt_num(q[1] - 4), fmt_num(q[3]), fmt_num(q[1] + 4),
          fmt_num(q[1] - 4), fmt_num(q[4]), fmt_num(q[1] + 4), color)
      end
      if s.markers ~= false then
        o[#o + 1] = string.format('<circle cx="%s" cy="%s" r="4" fill="%s" fill-opacity="%s" stroke="white" stroke-width="1"/>',
          fmt_num(q[1]), fmt_num(q[2]), color, op)
      end
      markers[#markers + 1] = { q[1] - 4, q[2] - 4, q[1] + 4, q[2] + 4 }
      if q[5] then labels[#labels + 1] = { x = q[1], y = q[2], text = q[5], color = color } end
    end
  end
  place_labels(o, labels, markers, { x0, y0, x1, y1 })
  -- legend
  if legend then
    local lx, ly = x1 + 16, y0 + 4
    for n, e in ipairs(named) do
      local s, i = e[1], e[2]
      local color = s.color or P.palette[(i - 1) % #P.palette + 1]
      local yy = ly + 18 * (n - 1)
      o[#o + 1] = string.format('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="3"%s/>',
        fmt_num(lx), fmt_num(yy + 6), fmt_num(lx + 18), fmt_num(yy + 6), color, s.dash and ' stroke-dasharray="5,3"' or "")
      if s.markers ~= false then
        o[#o + 1] = string.format('<circle cx="%s" cy="%s" r="3.5" fill="%s"/>', fmt_num(lx + 9), fmt_num(yy + 6), color)
      end
      o[#o + 1] = string.format('<text x="%s" y="%s" fill="#111">%s</text>', fmt_num(lx + 24), fmt_num(yy + 10), esc(s.name))
    end
  end
  if p.notes then
    o[#o + 1] = string.format('<text x="%s" y="%s" font-size="10" fill="#555">%s</text>', fmt_num(x0), fmt_num(oy + H - 4), esc(p.notes))
  end
  o[#o + 1] = "</g>"
end

local figure_keys = { "panels", "cols", "width", "height", "title" }

function P.svg(fig)
  if type(fig) ~= "table" then user_error("hb.plot.svg: expected a figure {panels = {...}} or a panel {series = {...}}", 2) end
  if fig.panels == nil then fig = { panels = { fig } } end
  config.check_keys(fig, figure_keys, "hb.plot figure")
  if type(fig.panels) ~= "table" or #fig.panels == 0 then user_error("hb.plot figure: 'panels' must be a non-empty list") end
  for i, p in ipairs(fig.panels) do check_panel(p, "hb.plot panel " .. i) end
  local cols = fig.cols or 1
  if math.type(cols) ~= "integer" or cols < 1 then user_error("hb.plot figure: cols must be a positive integer") end
  local pw, ph = fig.width or 720, fig.height or 360
  local rows = math.ceil(#fig.panels / cols)
  local top = fig.title and 30 or 0
  local W, H = pw * math.min(cols, #fig.panels), ph * rows + top
  local o = { string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">', W, H, W, H),
              string.format('<rect width="%d" height="%d" fill="white"/>', W, H) }
  if fig.title then
    o[#o + 1] = string.format('<text x="%d" y="21" font-size="16" font-weight="bold" text-anchor="middle" fill="#111">%s</text>', W // 2, esc(fig.title))
  end
  local lw = 0
  for _, p in ipairs(fig.panels) do lw = math.max(lw, select(2, legend_of(p))) end
  for i, p in ipairs(fig.panels) do
    local c, r = (i - 1) % cols, (i - 1) // cols
    draw_panel(o, p, c * pw, top + r * ph, pw, ph, lw)
  end
  o[#o + 1] = "</svg>"
  return table.concat(o, "\n") .. "\n"
end

local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- is rsvg-convert on PATH?
function P.have_rsvg()
  local p = io.popen("command -v rsvg-convert 2>/dev/null")
  local out = p and p:read("a") or ""
  if p then p:close() end
  return out:match("%S") ~= nil
end

function P.save(path, fig)
  if type(path) ~= "string" or path == "" then user_error("hb.plot.save(path, figure): path must be a file name", 2) end
  local svg = type(fig) == "string" and fig or P.svg(fig)
  local ext = path:match("%.(%w+)$")
  ext = ext and ext:lower()
  if ext == "svg" then
    hb.config.write_text(path, svg)
  elseif ext == "png" then
    if not P.have_rsvg() then
      user_error("hb.plot.save: PNG output needs rsvg-convert (Debian/Ubuntu: apt-get install librsvg2-bin); or write " ..
        path:gsub("%.%w+$", ".svg"))
    end
    local tmp = path .. ".tmp.svg"
    hb.config.write_text(tmp, svg)
    local ok = os.execute("rsvg-convert -o " .. sh(path) .. " " .. sh(tmp) .. " 2>/dev/null")
    os.remove(tmp)
    if not ok then user_error("hb.plot.save: rsvg-convert could not write " .. path) end
  else
    user_error("hb.plot.save: " .. path .. ": the file name must end in .svg or .png")
  end
  return path
end

-- ---- training curves ------------------------------------------------------------------------------------
function P.read_metrics(path)
  if type(path) ~= "string" then user_error("hb.plot.read_metrics(path): path must be a string", 2) end
  local f, err = io.open(path, "r")
  if not f then user_error(err) end
  local train, val = {}, {}
  local n = 0
  for line in f:lines() do
    n = n + 1
    if line:match("%S") then
      local ok, rec = pcall(hb.io.decode_json, line)
      if not ok or type(rec) ~= "table" then
        f:close()
        user_error(string.format("%s:%d: not a JSON record of hb.train's log", path, n))
      end
      if math.type(rec.step) == "integer" then
        if rec.loss ~= nil then train[rec.step] = rec end
        if rec.val_loss ~= nil then val[rec.step] = rec.val_loss end
      end
    end
  end
  f:close()
  local run = { path = path, steps = {}, loss = {}, lr = {}, tok_per_s = {}, grad_norm = {}, tokens = {}, time = {},
                val = { steps = {}, loss = {} } }
  local ks = {}
  for s in pairs(train) do ks[#ks + 1] = s end
  table.sort(ks)
  for i, s in ipairs(ks) do
    local r = train[s]
    run.steps[i], run.loss[i], run.lr[i] = s, r.loss, r.lr
    run.tok_per_s[i], run.grad_norm[i], run.tokens[i], run.time[i] = r.tok_per_s, r.grad_norm, r.tokens, r.time
  end
  local vs = {}
  for s in pairs(val) do vs[#vs + 1] = s end
  table.sort(vs)
  for i, s in ipairs(vs) do run.val.steps[i], run.val.loss[i] = s, val[s] end
  if #ks == 0 and #vs == 0 then user_error(path .. ": no training records (hb.train's metrics.jsonl has {step, loss, ...} lines)") end
  -- the run's name: its directory (runs/a/metrics.jsonl → a), else the file name
  run.name = path:match("([^/]+)/[^/]+$") or path:match("([^/]+)%.%w+$") or path
  return run
end

local curve_keys = { "smooth", "metrics", "names", "title", "logy", "width", "height" }
local metric_info = {
  loss = { "training loss", "loss (nats per token)" },
  lr = { "learning rate", "learning rate" },
  tok_per_s = { "throughput", "tokens/s (average since start)" },
  grad_norm = { "gradient norm", "gradient norm (before clipping)" },
}
local metric_names = { "loss", "lr", "tok_per_s", "grad_norm" }

function P.curves(paths, opts)
  if type(paths) == "string" then paths = { paths } end
  if type(paths) ~= "table" or #paths == 0 then user_error("hb.plot.curves: expected one or more metrics.jsonl paths", 2) end
  opts = opts or {}
  config.check_keys(opts, curve_keys, "hb.plot.curves")
  local alpha = opts.smooth == nil and 0.6 or opts.smooth
  if type(alpha) ~= "number" or alpha < 0 or alpha >= 1 then user_error("hb.plot.curves: smooth must be in [0, 1)") end
  local metrics = opts.metrics or { "loss", "lr", "tok_per_s" }
  for _, mname in ipairs(metrics) do
    if not metric_info[mname] then
      user_error("hb.plot.curves: unknown metric '" .. tostring(mname) .. "'" ..
        (config.suggest(tostring(mname), metric_names) and (" (did you mean '" .. config.suggest(tostring(mname), metric_names) .. "'?)")
          or (" (metrics: " .. table.concat(metric_names, ", ") .. ")")))
    end
  end
  local runs = {}
  for i, p in ipairs(paths) do
    runs[i] = P.read_metrics(p)
    if opts.names and opts.names[i] then runs[i].name = opts.names[i] end
  end
  -- names must tell the runs apart: add the parent directory where two coincide
  local seen = {}
  for _, r in ipairs(runs) do seen[r.name] = (seen[r.name] or 0) + 1 end
  for _, r in ipairs(runs) do if seen[r.name] > 1 then r.name = r.path:gsub("/[^/]+$", "") end end
  local panels = {}
  for _, mname in ipairs(metrics) do
    local series = {}
    for i, r in ipairs(runs) do
      local color = P.palette[(i - 1) % #P.palette + 1]
      local xs, ys = {}, {}
      for j, s in ipairs(r.steps) do
        local v = r[mname][j]
        if finite(v) and (not opts.logy or v > 0) then xs[#xs + 1] = s; ys[#ys + 1] = v end
      end
      local smoothed = (mname == "loss" or mname == "grad_norm") and alpha > 0
      if smoothed and #ys > 1 then
        local raw = {}
        for j = 1, #xs do raw[j] = { xs[j], ys[j] } end
        series[#series + 1] = { name = r.name .. " (raw)", color = color, points = raw, markers = false, width = 1, opacity = 0.25 }
        local sm = P.smooth(ys, alpha)
        local pts = {}
        for j = 1, #xs do pts[j] = { xs[j], sm[j] } end
        series[#series + 1] = { name = r.name, color = color, points = pts, markers = false }
      else
        local pts = {}
        for j = 1, #xs do pts[j] = { xs[j], ys[j] } end
        series[#series + 1] = { name = r.name, color = color, points = pts, markers = #pts == 1 }
      end
      if mname == "loss" and #r.val.steps > 0 then
        local vp = {}
        for j, s in ipairs(r.val.steps) do vp[j] = { s, r.val.loss[j] } end
        series[#series + 1] = { name = r.name .. " (validation)", color = color, points = vp, dash = true, width = 1.5 }
      end
    end
    -- the raw curves stay out of the legend: drop their names
    for _, s in ipairs(series) do if s.name:find(" %(raw%)$") then s.name = nil end end
    local info = metric_info[mname]
    panels[#panels + 1] = {
      title = info[1] .. ((mname == "loss" or mname == "grad_norm") and alpha > 0 and string.format(" (smoothed, α = %g)", alpha) or ""),
      xlabel = "step", ylabel = info[2], series = series, logy = opts.logy and mname ~= "lr" or nil,
      yformat = mname == "lr" and function(v) return string.format("%.3g", v) end or (mname == "tok_per_s" and "si" or nil),
    }
  end
  return { panels = panels, cols = 1, title = opts.title, width = opts.width, height = opts.height }
end

-- ---- the command line: hyblua plot ---------------------------------------------------------------------------
local usage = [[
usage: hyblua plot [options] RUN/metrics.jsonl [RUN2/metrics.jsonl ...]

Plots the training curves hb.train logs (metrics.jsonl): the loss (smoothed, with the raw curve faint
behind it and validation losses dashed), the learning rate and the throughput, one panel each, one
colour per run, with a legend.

Options:
  --out FILE        the figure: .svg, or .png (needs rsvg-convert: apt-get install librsvg2-bin)
                    (default: curves.svg in the current directory)
  --smooth A        exponential smoothing of the loss, A in [0, 1) (default 0.6; 0: none)
  --metrics LIST    panels, comma-separated, from loss, lr, tok_per_s, grad_norm (default loss,lr,tok_per_s)
  --names LIST      legend names, comma-separated (default: each file's directory)
  --title TEXT      a title over the figure
  --logy            logarithmic y axes (not for lr)
  -h, --help        this help
]]

local function split(s)
  local out = {}
  for x in s:gmatch("[^,]+") do out[#out + 1] = x end
  return out
end

function P.main(args)
  args = args or {}
  local files, opts, out = {}, {}, "curves.svg"
  local i = 1
  local function value(name)
    i = i + 1
    if args[i] == nil then user_error("plot: option " .. name .. " needs a value") end
    return args[i]
  end
  while i <= #args do
    local a = args[i]
    local k, v = a:match("^(%-%-[%w_-]+)=(.*)$")
    if k then a = k; table.insert(args, i + 1, v) end
    if a == "-h" or a == "--help" then io.stdout:write(usage); return 0
    elseif a == "--out" or a == "-o" then out = value(a)
    elseif a == "--smooth" then
      local s = value(a)
      opts.smooth = tonumber(s) or user_error("plot: --smooth expects a number in [0, 1), got '" .. s .. "'")
    elseif a == "--metrics" then opts.metrics = split(value(a))
    elseif a == "--names" then opts.names = split(value(a))
    elseif a == "--title" then opts.title = value(a)
    elseif a == "--logy" then opts.logy = true
    elseif a:match("^%-") then
      local known = { "--out", "--smooth", "--metrics", "--names", "--title", "--logy", "--help" }
      local s = config.suggest(a, known)
      user_error("plot: unknown option " .. a .. (s and (" (did you mean " .. s .. "?)") or " (hyblua plot --help)"))
    else
      files[#files + 1] = a
    end
    i = i + 1
  end
  if #files == 0 then user_error("plot: no metrics files given (hyblua plot RUN/metrics.jsonl ...; --help)") end
  P.save(out, P.curves(files, opts))
  print("wrote " .. out)
  return 0
end

return P

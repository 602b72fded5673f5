-- test_stats.lua — hb.stats against values computed independently.
-- Expected values were computed once with plain Python 3.11 (no numpy/scipy), by other methods than the
-- Lua code: Student's t quantiles by Simpson integration of the t density (20 000 panels) and bisection,
-- cross-checked with the closed forms tan(π(p − ½)) for df = 1 and (2p−1)/√(2p(1−p)) for df = 2 and the
-- printed tables (t_{.975}: 4.303, 2.776, 2.262, 2.045); the t-interval, Welch's df and interval, and
-- Spearman's ρ with ties by the textbook formulas; splitmix64 and the stratified bootstrap by a
-- reimplementation of the same algorithm (the script is quoted in the comments next to each value).
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local S = hb.stats

local function close(a, b, tol) return a and b and math.abs(a - b) <= (tol or 1e-9) * math.max(1, math.abs(b)) end
local function near(a, b, tol, desc) return T.ok(close(a, b, tol), desc, string.format("got %s, expected %s", tostring(a), tostring(b))) end

-- ---- Student's t --------------------------------------------------------------------------------------------
near(S.t_quantile(0.975, 1), 12.706204736174696, 1e-9, "t quantile df 1 = tan(0.475π)")
near(S.t_quantile(0.975, 2), 4.302652729749464, 1e-9, "t quantile df 2 = 0.95/√(2·0.975·0.025)")
near(S.t_quantile(0.975, 4), 2.7764451051978023, 1e-8, "t quantile df 4 (Simpson: 2.7764451051978)")
near(S.t_quantile(0.975, 9), 2.2621571627409915, 1e-8, "t quantile df 9")
near(S.t_quantile(0.975, 29), 2.0452296421328064, 1e-8, "t quantile df 29")
near(S.t_quantile(0.975, 7.5), 2.3330396268649283, 1e-8, "t quantile at a real df (Welch) 7.5")
near(S.t_quantile(0.025, 4), -2.7764451051978023, 1e-8, "t quantile is odd about ½")
near(S.t_cdf(0, 3), 0.5, 1e-12, "t cdf at 0 is ½")
near(S.t_cdf(S.t_quantile(0.9, 5), 5), 0.9, 1e-10, "cdf(quantile(p)) = p")
near(S.lgamma(5), math.log(24), 1e-12, "lgamma(5) = log 4!")
near(S.lgamma(0.5), 0.5 * math.log(math.pi), 1e-12, "lgamma(½) = log √π")
T.raises(function() S.t_quantile(1, 3) end, "p must be in (0, 1)", "t quantile refuses p = 1")

-- ---- intervals ------------------------------------------------------------------------------------------------
-- xs = [0.91, 0.95, 0.97, 0.93]: mean 0.94, sd 0.025819888974716078, half = t(3)·sd/2 = 0.041085205135210405
local ci = S.ci { 0.91, 0.95, 0.97, 0.93 }
near(ci.mean, 0.94, 1e-12, "ci: mean")
near(ci.sd, 0.025819888974716078, 1e-12, "ci: sample sd (n − 1)")
near(ci.half, 0.041085205135210405, 1e-9, "ci: 95% t half-width")
T.ok(close(ci.lo, 0.94 - ci.half, 1e-12) and close(ci.hi, 0.94 + ci.half, 1e-12), "ci: lo and hi")
local one = S.ci { 0.5 }
T.ok(one.n == 1 and one.mean == 0.5 and one.half == nil, "ci of one sample: a mean, no interval")
-- Welch: a = [1, 2, 4], b = [2, 2.5, 2.7, 3.1]: diff −0.2416666…, df 2.2711249930316018, half 3.5040591861467587
local w = S.welch({ 1, 2, 4 }, { 2, 2.5, 2.7, 3.1 })
near(w.diff, -0.2416666666666667, 1e-12, "welch: difference of means")
near(w.df, 2.2711249930316018, 1e-12, "welch: Welch–Satterthwaite df")
near(w.half, 3.5040591861467587, 1e-8, "welch: 95% half-width at a fractional df")
T.raises(function() S.welch({ 1 }, { 2, 3 }) end, "needs at least 2 values", "welch needs two samples per side")
T.raises(function() S.mean({ 1, 0 / 0 }) end, "element 2 is not a number", "NaN is refused with its position")

-- ---- ranks and correlations ---------------------------------------------------------------------------------------
local r = S.ranks { 10, 20, 20, 5 }
T.ok(r[1] == 2 and r[2] == 3.5 and r[3] == 3.5 and r[4] == 1, "ranks: ties get their average rank")
near(S.spearman({ 1, 2, 3, 4, 5 }, { 2, 1, 4, 3, 5 }), 0.8, 1e-12, "spearman without ties: 1 − 6·4/(5·24) = 0.8")
near(S.spearman({ 1, 2, 2, 3 }, { 1, 3, 2, 4 }), 0.9486832980505138, 1e-12, "spearman with ties (Pearson on average ranks)")
near(S.spearman({ 1, 2, 3 }, { 9, 4, 1 }), -1, 1e-12, "spearman of a decreasing relation is −1")
T.is(S.spearman({ 1, 2, 3 }, { 5, 5, 5 }), nil, "spearman with a constant side is undefined (nil)")

-- ---- the generator and the bootstrap ------------------------------------------------------------------------------------
local g = S.rng(0)
T.is(string.format("%x %x", g.next(), g.next()), "e220a8397b1dcdaf 6e789e6aa1b965f4", "splitmix64(0): the reference's first outputs")
-- stratified bootstrap of spearman(x, group means), x = [0, .25, .5], groups [[.1,.3,.2],[.25,.2,.5],[.6,.3,.4]],
-- B = 200, seed 7: all 200 replicates defined, 2.5%/97.5% percentiles 0.5 and 1.0 (153 replicates are exactly 1)
local xs = { 0, 0.25, 0.5 }
local b = S.bootstrap({ { 0.1, 0.3, 0.2 }, { 0.25, 0.2, 0.5 }, { 0.6, 0.3, 0.4 } },
  function(m) return S.spearman(xs, m) end, { B = 200, seed = 7 })
T.ok(b.valid == 200 and close(b.lo, 0.5, 1e-12) and close(b.hi, 1.0, 1e-12) and close(b.estimate, 1, 1e-12),
  "bootstrap: the reimplementation's interval [0.5, 1.0] and estimate 1", string.format("%s %s %s %s", b.valid, b.lo, b.hi, b.estimate))
local b1 = S.bootstrap({ { 1 }, { 2 } }, function(m) return m[2] - m[1] end)
T.ok(b1.estimate == 1 and b1.lo == nil and b1.valid == 0, "bootstrap with one sample per group: no interval")

-- ---- findings over synthetic grid records ---------------------------------------------------------------------------------
-- two mixers × {pure, 3:1, 1:1} + a Transformer, 3 seeds. Mixer "a" is best pure, "b" best hybrid (a rank
-- change); recall rises with attention for both; "b"'s best hybrid equals the Transformer, "a"'s stays far below;
-- LM: ratios move bpb by ~0.01, mixers differ by 1.0 (flat).
local recs = {}
local function add(mixer, ratio, share, bpb, acc)
  for s = 0, 2 do
    local e = (s - 1) * 0.002 -- seed noise
    recs[#recs + 1] = { name = mixer .. ratio, mixer = mixer, ratio = ratio, attn_share = share, layers = mixer .. ratio, seed = s,
                        lm_val_bpb = bpb + e, mqar_acc = acc + e }
  end
end
add("a", 0, 0, 2.00, 0.20); add("a", 3, 0.25, 2.01, 0.40); add("a", 1, 0.5, 2.00, 0.60)
add("b", 0, 0, 3.00, 0.10); add("b", 3, 0.25, 1.90, 0.70); add("b", 1, 0.5, 1.91, 0.90)
add("transformer", -1, 1, 2.5, 0.90)
-- a same_as copy must be ignored (it would otherwise double a cell)
recs[#recs + 1] = { name = "a24", mixer = "a", ratio = 24, attn_share = 0, layers = "a0", seed = 0, lm_val_bpb = 9, mqar_acc = 0, same_as = "a0" }
local f = S.findings(recs, { B = 500 })
T.is(f.seeds_min, 3, "findings: 3 seeds per cell")
T.ok(f.f1_lm.top_pure == "a" and f.f1_lm.top_hybrid == "b" and f.f1_lm.top_changed and f.f1_lm.seeds_top_changed == 3
  and f.f1_lm.seeds == 3, "F1 (LM): a best pure, b best hybrid, in all 3 seeds")
T.ok(f.f1_recall.top_pure == "a" and f.f1_recall.top_hybrid == "b", "F1 (recall): the same change")
near(f.f2.ratio_effect.estimate, (0.01 + 1.10) / 2, 1e-9, "F2: ratio effect = mean within-mixer range ((0.01 + 1.10)/2)")
near(f.f2.mixer_spread.estimate, math.abs((2.00 + 2.01 + 2.00) / 3 - (3.00 + 1.90 + 1.91) / 3), 1e-9, "F2: spread of mixer averages")
T.ok(#f.f3 == 2 and close(f.f3[1].rho.estimate, 1, 1e-12) and f.f3[1].verdict == "holds", "F3: ρ = 1 for a, interval above 0")
T.ok(#f.f4 == 2 and f.f4[1].verdict == "does not recover" and f.f4[2].verdict == "recovers",
  "F4: a's best hybrid (0.60) does not recover the Transformer's 0.90; b's (0.90) does")
near(f.f4[2].diff.diff, 0, 1e-12, "F4: b's difference is 0")
-- ties at a ceiling are not rank changes: "c" and "d" both at ~1.0 recall pure and hybrid, the seed's winner
-- flipping by one test example (1/3000); a third mixer "e" far below. With the default tie of 0.005: no top or
-- order change; with tie 0 every seed's top "changes" (the artefact the tie removes).
local trecs = {}
local function addt(mixer, ratio, accs)
  for s = 0, 2 do
    trecs[#trecs + 1] = { name = mixer .. ratio, mixer = mixer, ratio = ratio, attn_share = ratio == 0 and 0 or 0.25,
                          layers = mixer .. ratio, seed = s, lm_val_bpb = 2, mqar_acc = accs[s + 1] }
  end
end
addt("c", 0, { 1.0, 1.0, 1.0 }); addt("c", 3, { 0.99967, 0.99967, 0.99967 })
addt("d", 0, { 0.99967, 0.99967, 0.99967 }); addt("d", 3, { 1.0, 1.0, 1.0 })
addt("e", 0, { 0.1, 0.12, 0.11 }); addt("e", 3, { 0.2, 0.18, 0.19 })
local ft = S.findings(trecs, { B = 200 })
T.ok(ft.f1_recall.seeds_top_changed == 0 and ft.f1_recall.seeds_order_changed == 0,
  "F1: a one-example difference at the ceiling is a tie (no top or order change)",
  ft.f1_recall.seeds_top_changed .. " " .. ft.f1_recall.seeds_order_changed)
local ft0 = S.findings(trecs, { B = 200, tie_recall = 0 })
T.ok(ft0.f1_recall.seeds_top_changed == 3 and ft0.f1_recall.seeds_order_changed == 3,
  "F1 with tie_recall = 0: every seed's top and order change", ft0.f1_recall.seeds_top_changed)
T.ok(table.concat(S.findings_markdown(ft), "\n"):find("values within 0.005 are ties", 1, true),
  "the findings table states the tie")
local md = table.concat(S.findings_markdown(f), "\n")
T.ok(md:find("| 1 | standalone rank", 1, true) and md:find("| 4 | hybrids recover", 1, true) and md:find("recovers |", 1, true),
  "findings_markdown: one row per finding and mixer")
-- two distinct stacks per mixer (pure and 3:1, as at 4 layers): F3 is the Welch difference, more attention minus less
do
  local two = {}
  for _, x in ipairs(recs) do if x.ratio ~= 1 then two[#two + 1] = x end end
  local f2s = S.findings(two, { B = 100 })
  T.ok(#f2s.f3 == 2 and f2s.f3[1].points == 2 and f2s.f3[1].diff and f2s.f3[1].verdict == "holds",
    "F3 with two stacks: a Welch interval, verdict holds (a: 0.40 vs 0.20)")
  near(f2s.f3[1].diff.diff, 0.20, 1e-12, "F3 with two stacks: a's 3:1 − pure = 0.20")
  T.ok(f2s.f3[1].shares[1] == 0 and f2s.f3[1].shares[2] == 0.25, "F3 with two stacks: less attention first")
  local rev = {}
  for _, x in ipairs(two) do
    local y = {}
    for k, v in pairs(x) do y[k] = v end
    if y.mixer == "b" and y.ratio == 3 then y.mqar_acc = 0.05 + (y.seed - 1) * 0.002 end
    rev[#rev + 1] = y
  end
  T.is(S.findings(rev, { B = 100 }).f3[2].verdict, "reversed", "F3 with two stacks: recall falling with attention is 'reversed'")
  T.like(table.concat(S.findings_markdown(f2s), "\n"), "two distinct stacks", "findings_markdown: the two-stack F3 row says what it tests")
end
-- one seed: no intervals, said so
local one_seed = {}
for _, x in ipairs(recs) do if x.seed == 0 then one_seed[#one_seed + 1] = x end end
local f1 = S.findings(one_seed, { B = 50 })
T.like(table.concat(S.findings_markdown(f1), "\n"), "no test (1 seed)", "F1 with one seed gives no verdict (a majority of one seed is no test)")
T.ok(f1.f2.verdict == "no interval (1 seed)" and f1.f4[1].verdict == "no interval (1 seed)", "one seed: verdicts say there is no interval")
-- hb.plot's error bars: "ci95" spans the t-interval of the mean (wider than ± sd for 3 samples: t(2)/√3 = 2.48)
do
  local function fig(mode)
    return hb.plot.svg { panels = { { series = { { name = "a", points = { { 0, { 1.0, 2.0, 3.0 } }, { 1, { 2.0, 2.5, 3.0 } } } } },
      errorbars = mode } } }
  end
  local sd, ci = fig(nil), fig("ci95")
  T.ok(type(sd) == "string" and type(ci) == "string" and sd ~= ci, "plot: ci95 error bars differ from ± sd bars")
  T.is(fig("sd"), sd, "plot: errorbars = \"sd\" is the default")
  T.raises(function() fig("se") end, 'errorbars must be "sd" or "ci95", got se', "plot: an unknown errorbars value is refused")
end
T.done()

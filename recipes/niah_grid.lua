-- recipes/niah_grid.lua — RULER's needle-in-a-haystack tasks on the LM models of a paper_grid run.
--
-- The paper tests its LM-trained hybrids with RULER's S-NIAH and MK-NIAH at lengths beyond training. This recipe
-- loads each finished cell-seed's LM model (ckpt/<cell>__s<seed>-lm, the final checkpoint) and runs the tasks at
-- the given lengths, without training anything:
--
--   hyblua recipes/niah_grid.lua --grid results                       # S-NIAH-1/2, MK-NIAH-1 at 1024, 2048, 4096
--   hyblua recipes/niah_grid.lua --grid results --set tasks=[niah_single_1] --set lengths=[1024]
--
-- Two numbers per task and length, each averaged over depths × samples cases:
--   score       RULER's string_match_all as a fraction (greedy decoding of tokens_to_generate tokens; the share of
--               the gold values found in the output)
--   answer_acc  hb.eval.niah.answer_accuracy: the share of the gold answer's tokens the model ranks first after
--               the prompt and the answer's earlier tokens (teacher forcing). Not RULER's: a graded signal for
--               models too small to generate a 7-digit value whole, where RULER's score is 0 for every cell.
-- The cases of seed s are a function of s, the task and the length alone (the same for every cell). Lengths are
-- in tokens of the LM data's tokenizer (bytes unless `tokenizer` names a tokenizer.json); the prompt plus
-- tokens_to_generate fits the length, as in RULER.
--
-- Writes <grid>/niah/<cell>__s<seed>.json (one per cell-seed; a re-run skips those present) and
-- <grid>/niah_grid.md / .csv: mean ± 95% t-interval over seeds per cell, task and length, and per mixer the
-- difference hybrid − pure with its Welch interval.
local hb = require "hyblua"
local K = hb.config.key

local task_names = {}
for k in pairs(hb.eval.niah.TASKS) do task_names[#task_names + 1] = k end
table.sort(task_names)
local defaults = hb.config.declare {
  grid = K("results", "a paper_grid output directory (its cells/*.json and ckpt/)"),
  tasks = K({ "niah_single_1", "niah_single_2", "niah_multikey_1" }, "RULER tasks", { choices = task_names }),
  lengths = K({ 1024, 2048, 4096 }, "lengths in tokens (prompt + tokens_to_generate; MK-NIAH-1 needs ~580 bytes)", { min = 16 }),
  depths = K({ 0.1, 0.3, 0.5, 0.7, 0.9 }, "needle depths in [0, 1] (RULER samples 40)", { min = 0, max = 1 }),
  samples = K(2, "cases per length and depth", { min = 1 }),
  tokens_to_generate = K(32, "greedy tokens per case (RULER: 128; a 7-digit value needs 8 bytes)", { min = 1 }),
  tokenizer = K("", "tokenizer.json of the grid's LM data (empty: bytes, for models with a 256-token vocabulary)"),
  seed = K(42, "seed of the cases (seed s of a cell-seed uses seed + 1000·s)", { min = 0 }),
  threads = K(0, "worker threads (0: HYBLUA_NUM_THREADS or all CPUs)", { min = 0, max = 256 }),
}
local cfg = hb.config.parse_args(arg, defaults, { description = "RULER needle-in-a-haystack on the LM models of a " ..
  "paper_grid run; writes <grid>/niah_grid.md and .csv" })
if cfg.threads > 0 then hb.set_num_threads(cfg.threads) end
local tok = cfg.tokenizer ~= "" and hb.tokenizer.load(cfg.tokenizer) or hb.tokenizer.byte()
local tok_vocab = tok:vocab_size()

-- the cases of one seed (built once per seed: every cell of that seed sees the same prompts)
local cases_of = {}
local function cases(seed)
  if not cases_of[seed] then
    local by = {}
    for _, task in ipairs(cfg.tasks) do
      for _, L in ipairs(cfg.lengths) do
        local c = hb.eval.niah.cases { task = task, lengths = { L }, depths = cfg.depths, samples = cfg.samples,
          tokenizer = tok, tokens_to_generate = cfg.tokens_to_generate, seed = cfg.seed + 1000 * seed }
        by[#by + 1] = { task = task, length = L, cases = c }
      end
    end
    cases_of[seed] = by
  end
  return cases_of[seed]
end

local G = cfg.grid
local recs, skipped = hb.grid.evaluate { grid = G, subdir = "niah", task = "lm", who = "niah_grid",
  settings = { tasks = cfg.tasks, lengths = cfg.lengths, depths = cfg.depths, samples = cfg.samples,
               tokens_to_generate = cfg.tokens_to_generate, seed = cfg.seed, tokenizer_vocab = tok_vocab },
  needs = function(r) return type(r.lm_val_loss) ~= "number" and "no LM result" or nil end,
  evaluate = function(m, r)
    if m.config.vocab_size ~= tok_vocab then
      hb.user_error(string.format("niah_grid: %s__s%d has a %d-token vocabulary but the tokenizer has %d (give the LM data's " ..
        "tokenizer.json with --set tokenizer=PATH)", r.name, r.seed, m.config.vocab_size, tok_vocab))
    end
    local res = { lm_val_bpb = r.lm_val_bpb, tests = {} }
    io.stderr:write(string.format("%-32s", r.name .. "__s" .. r.seed))
    for _, t in ipairs(cases(r.seed)) do
      local score = hb.eval.niah.run(m, tok, t.cases, { tokens_to_generate = cfg.tokens_to_generate })
      local acc, d = hb.eval.niah.answer_accuracy(m, tok, t.cases)
      res.tests[#res.tests + 1] = { task = t.task, length = t.length, score = score / 100, answer_acc = acc, exact = d.exact, n = d.n }
      io.stderr:write(string.format("  %s@%d %.2f/%.2f", t.task:gsub("^niah_", ""), t.length, score / 100, acc))
    end
    io.stderr:write("\n")
    return res
  end }
hb.grid.report { grid = G, name = "niah_grid", recs = recs, skipped = skipped, title = "Needle in a haystack (RULER) on the LM models",
  intro = string.format("Grid: %s. Each cell-seed's LM model (final checkpoint) on %d cases per task and length (depths %s × %d " ..
    "samples, %d generated tokens; tokenizer: %s). Each entry: RULER's score (string_match_all as a fraction) / the " ..
    "teacher-forced answer-token accuracy, mean ± half-width of the 95%% t-interval over seeds.", G, #cfg.depths * cfg.samples,
    table.concat(cfg.depths, ", "), cfg.samples, cfg.tokens_to_generate, cfg.tokenizer ~= "" and cfg.tokenizer or "bytes"),
  keys = { "task", "length" },
  metrics = { { field = "score", label = "RULER score" }, { field = "answer_acc", label = "answer-token accuracy" } },
  base = { field = "lm_val_bpb", label = "LM bpb" },
  column = function(t, short) return string.format("%s %d", short and t.task:gsub("^niah_", "") or t.task, t.length) end }
io.stderr:write(string.format("niah_grid: %d cell-seeds → %s/niah_grid.md, niah_grid.csv\n", #recs, G))

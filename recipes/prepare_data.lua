-- prepare_data.lua — text files → token shards for training (run by `make data`, or by hand):
--   ./hyblua recipes/prepare_data.lua --input data/cache/sotu --out data/sotu [--bpe 4096] [--seed 1234]
-- Writes out/{train.bin, val.bin, meta.json, tokenizer.json} with the byte tokenizer; with --bpe N also
-- trains a byte-level BPE of N ids on the training documents and writes out/bpe<N>/ the same way (the
-- same documents go to validation in both, since the split depends only on the seed and file names).
-- --config file.yaml and --set key=value work as in every recipe (hb.config.parse_args).
local hb = require "hyblua"

local K = hb.config.key
local defaults = hb.config.declare {
  input = K("data/cache/sotu", "a directory of *.txt files (one document each) or one text file"),
  out = K("data/sotu", "output directory of the shards"),
  val_fraction = K(0.05, "share of the documents held out for validation", { min = 0, max = 1 }),
  seed = K(1234, "seed of the train/validation split", { min = 0 }),
  bpe = K(0, "also train a byte-level BPE of this many ids into <out>/bpe<N> (0: byte tokenizer only)", { min = 0 }),
  force = K(false, "prepare again even when <out>/meta.json exists"),
}
local cfg = hb.config.parse_args(arg, defaults, {
  description = "Text files → token shards for training: <out>/train.bin, val.bin, meta.json and tokenizer.json " ..
    "with the byte tokenizer (and with --bpe N a BPE of N ids in <out>/bpe<N>). Run by `make data`.",
})
if cfg.bpe > 0 and cfg.bpe < 257 then hb.user_error("--bpe " .. cfg.bpe .. ": a BPE needs at least 257 ids (the 256 bytes and one merge)") end

local function report(dir, meta)
  print(string.format("%s: %s tokenizer, vocab %d; train %d docs, %d tokens (%d bytes); val %d docs, %d tokens (%d bytes)",
    dir, meta.tokenizer.name, meta.vocab_size, meta.train.documents, meta.train.tokens, meta.train.bytes,
    meta.val.documents, meta.val.tokens, meta.val.bytes))
end

local function prepare(dir, opts)
  local existing = io.open(dir .. "/meta.json", "rb")
  if existing and not cfg.force then
    existing:close()
    -- prepared by an earlier run: reused with the same split only (a run asking for another one must not be
    -- told "prepared" and then train on shards split otherwise). meta.json records the split; prepare.yaml,
    -- when this recipe wrote it, the input.
    local rec, now = {}, {}
    local okm, meta = pcall(hb.io.read_json, dir .. "/meta.json")
    if okm and type(meta) == "table" then
      rec.val_fraction, rec.seed = meta.val_fraction, meta.seed
    end
    local oky, was = pcall(hb.config.load, dir .. "/prepare.yaml")
    local function path(x) return type(x) == "string" and (x:gsub("/+$", "")) or x end
    if oky and type(was) == "table" then rec.input = path(was.input) end
    for k in pairs(rec) do now[k] = k == "input" and path(cfg.input) or cfg[k] end -- what was recorded only
    local d = hb.config.diff(rec, now)
    if #d > 0 then
      hb.user_error(string.format("prepare_data: %s was prepared with other settings: %s; --force to prepare it " ..
        "again with this run's, or another --out", dir, table.concat(d, ", ")))
    end
    print(dir .. ": already prepared (--force to redo)")
    return
  end
  if existing then existing:close() end
  opts.input, opts.out, opts.val_fraction, opts.seed = cfg.input, dir, cfg.val_fraction, cfg.seed
  local t0 = os.time()
  report(dir, hb.data.prepare(opts))
  if os.time() - t0 > 5 then print(string.format("  (%d s)", os.time() - t0)) end
  hb.config.save(dir .. "/prepare.yaml", cfg, "configuration of recipes/prepare_data.lua")
end

prepare(cfg.out, { tokenizer = "byte" })
if cfg.bpe > 0 then prepare(cfg.out .. "/bpe" .. cfg.bpe, { bpe_vocab = cfg.bpe }) end

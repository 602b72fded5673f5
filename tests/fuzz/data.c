/* data.c — fuzz target: prepared training data as hb.data.load reads it — meta.json (lua/hyblua/data.lua)
 * and the token shards train.bin / val.bin (io/data.c's header check and mmap reader, through
 * lua/ldata.c) — run inside an embedded Lua state (fuzz_lua.h).
 *
 * Entry point: hb.data.load(dir). The input is three files (fuzz.h's fz_split): a 2-byte length and
 * meta.json, a 2-byte length and train.bin, and the rest is val.bin. A rejected input (a Lua error with
 * a message) is fine; a crash, a sanitizer report, a leak or a Lua runtime error from library code is a
 * bug. For data that loads, for both shards it checks:
 *   - len >= 0, token_bytes 2 or 4, a recorded vocab_size equal to meta.json's (load promises that);
 *   - num_windows(4) == ceil((len - 1) / 4); the first windows have T+1 = 5 tokens (the last may be
 *     shorter), window(1, n) reads n tokens; reading past the end raises a message; an id read is always
 *     below the shard's vocabulary (a shard holding one more fails the read with a message);
 *   - batch(2, 4, seed, k) is [2, 5], is the same when drawn twice, and every row is a run of tokens
 *     found in the shard (row == window at some offset);
 *   - with a byte tokenizer in meta.json, d.tokenizer() decodes the first window when its ids fit.
 * Run: make fuzz FUZZ_TARGETS=data (seeds: tests/fuzz/corpus/data; -max_len 4096).
 */
#include "fuzz_lua.h"

static const char harness[] =
    "local hb = require 'hyblua'\n"
    "hb.set_num_threads(1)\n"
    "local function check(cond, what) if not cond then fz_fail(what) end end\n"
    "local function equal(a, b)\n"
    "  if a:numel() ~= b:numel() then return false end\n"
    "  if a:numel() == 0 then return true end\n"
    "  local x, y = a:view(-1):tolist(), b:view(-1):tolist()\n"
    "  for i = 1, #x do if x[i] ~= y[i] then return false end end\n"
    "  return true\n"
    "end\n"
    "return function(dir)\n"
    "  local d = hb.data.load(dir)\n"
    "  check(type(d.meta) == 'table', 'meta is not a table')\n"
    "  for _, k in ipairs { 'train', 'val' } do\n"
    "    local s = d[k]\n"
    "    local n = s:len()\n"
    "    check(math.type(n) == 'integer' and n >= 0, k .. ': len')\n"
    "    check(s:token_bytes() == 2 or s:token_bytes() == 4, k .. ': token_bytes')\n"
    "    local v = s:vocab_size()\n"
    "    check(v == nil or v == d.meta.vocab_size, k .. ': vocab_size differs from meta.json')\n"
    "    local nw = s:num_windows(4)\n"
    "    check(nw == (n < 2 and 0 or (n - 1 + 3) // 4), k .. ': num_windows')\n"
    "    local count = 0\n"
    "    for i, w in s:windows(4) do\n"
    "      count = count + 1\n"
    "      check(w:size(1) == 1 and (w:size(2) == 5 or (i == nw and w:size(2) <= 5 and w:size(2) >= 2)), k .. ': window size')\n"
    "      if v then for _, id in ipairs(w:view(-1):tolist()) do check(id < v, k .. ': an id beyond the vocabulary was read') end end\n"
    "      if count >= 3 then break end\n"
    "    end\n"
    "    local m = math.min(n, 8)\n"
    "    check(s:window(1, m):numel() == m, k .. ': window(1, n)')\n"
    "    local ok, err = pcall(s.window, s, n + 1, 1)\n"
    "    check(not ok and type(err) == 'string' and err:find('outside', 1, true), k .. ': reading past the end: ' .. tostring(err))\n"
    "    if n >= 5 then\n"
    "      local b = s:batch(2, 4, 7, 3)\n"
    "      check(b:size(1) == 2 and b:size(2) == 5, k .. ': batch shape')\n"
    "      check(equal(b, s:batch(2, 4, 7, 3)), k .. ': batch not deterministic')\n"
    "      if n <= 64 then\n"
    "        for r = 1, 2 do\n"
    "          local row, found = b:select(1, r), false\n"
    "          for off = 1, n - 4 do if equal(row, s:window(off, 5)) then found = true break end end\n"
    "          check(found, k .. ': batch row is not a run of the shard')\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  if type(d.meta.tokenizer) == 'table' and d.meta.tokenizer.kind == 'byte' and d.train:len() > 0 then\n"
    "    local ids = d.train:window(1, math.min(d.train:len(), 8))\n"
    "    local fits = true\n"
    "    for _, id in ipairs(ids:tolist()) do fits = fits and id < 256 end\n"
    "    if fits then check(type(d.tokenizer():decode(ids)) == 'string', 'decode') end\n"
    "  end\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t n;
    const uint8_t *meta = fz_split(&data, &size, &n);
    fz_put(fz_file("meta.json"), meta, n);
    const uint8_t *train = fz_split(&data, &size, &n);
    fz_put(fz_file("train.bin"), train, n);
    fz_put(fz_file("val.bin"), data, size);
    fz_lua_run(harness, fz_dir());
    return 0;
}

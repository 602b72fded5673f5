/* config.c — fuzz target: config.json → model config → model, the real path of hb.load_pretrained and
 * hb.models.new: hb.io.read_json (io/jsonfile.c + lua/lio.c's JSON → Lua conversion), then
 * hb.models.new (lua/hyblua/models.lua: schedule resolution, config_fla.lua's defaults and validation,
 * parameter declaration and initialisation), run inside an embedded Lua state (fuzz_lua.h).
 *
 * Entry point: the input is written to config.json; the harness below reads it and builds the model
 * with hb.models.max_params lowered to 1 000 000 (a config asking for more must be refused with a message
 * before anything is allocated). A rejected config (a Lua error with a message) is fine; a crash, a
 * sanitizer report, a leak, or a Lua runtime error from library code ("attempt to index a nil value") is
 * a bug. For a model that builds, it checks:
 *   - the parameter count is within the limit and every parameter has the declared shape;
 *   - a forward pass of one row of 4 tokens gives logits [1, 4, vocab_size];
 *   - save_pretrained + load_pretrained round-trips: the same public config (numbers compared by value)
 *     and the same logits.
 * Run: make fuzz FUZZ_TARGETS=config (seeds: tests/fuzz/corpus/config; -max_len 2048).
 */
#include "fuzz_lua.h"

static const char harness[] =
    "local hb = require 'hyblua'\n"
    "hb.set_num_threads(1)\n"
    "local LIMIT = 1000000\n"
    "hb.models.max_params = LIMIT\n"
    "local function check(cond, what) if not cond then fz_fail(what) end end\n"
    "local function same(a, b, path)\n"
    "  if type(a) == 'number' and type(b) == 'number' then\n"
    "    check(a == b or (a ~= a and b ~= b), 'config round trip: ' .. path .. ' ' .. tostring(a) .. ' vs ' .. tostring(b))\n"
    "  elseif type(a) == 'table' and type(b) == 'table' then\n"
    "    for k, v in pairs(a) do same(v, b[k], path .. '.' .. tostring(k)) end\n"
    "    for k, v in pairs(b) do check(a[k] ~= nil, 'config round trip: ' .. path .. '.' .. tostring(k) .. ' appeared') end\n"
    "  else\n"
    "    check(a == b, 'config round trip: ' .. path .. ' ' .. tostring(a) .. ' vs ' .. tostring(b))\n"
    "  end\n"
    "end\n"
    "local function public(cfg)\n"
    "  local t = {}\n"
    "  for k, v in pairs(cfg) do if type(k) ~= 'string' or k:sub(1, 1) ~= '_' then t[k] = v end end\n"
    "  t.dtype, t.torch_dtype, t.transformers_version = nil, nil, nil\n"
    "  return t\n"
    "end\n"
    "return function(dir)\n"
    "  local cfg = hb.io.read_json(dir .. '/config.json')\n"
    "  local m = hb.models.new(cfg, { seed = 1 })\n"
    "  local n = m:num_parameters()\n"
    "  check(n <= LIMIT, 'a model of ' .. n .. ' parameters was built past max_params')\n"
    "  for name, p in pairs(m:state_dict()) do\n"
    "    local want = m._spec[name].shape\n"
    "    check(#p:shape() == #want, name .. ': wrong rank')\n"
    "    for i = 1, #want do check(p:size(i) == want[i], name .. ': wrong shape') end\n"
    "  end\n"
    "  local V = m.config.vocab_size\n"
    "  local ids = hb.tensor({ { 0, 1 % V, 2 % V, 3 % V } }, 'int64')\n"
    "  local logits = m:forward(ids)\n"
    "  local s = logits:shape()\n"
    "  check(#s == 3 and s[1] == 1 and s[2] == 4 and s[3] == V, 'logits shape')\n"
    "  m:save_pretrained(dir .. '/ckpt')\n"
    "  local m2 = hb.load_pretrained(dir .. '/ckpt')\n"
    "  same(public(m.config), public(m2.config), 'config')\n"
    "  local l2 = m2:forward(ids)\n"
    "  local d = (logits - l2):abs():max():item()\n"
    "  check(d == 0 or d ~= d, 'logits differ after save/load by ' .. tostring(d))\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_put(fz_file("config.json"), data, size);
    fz_lua_run(harness, fz_dir());
    return 0;
}

#!/bin/sh
# tests/scripts/allocfail_lua.sh [HYBLUA] [STEP] — allocation failures seen from Lua (not run by make test:
# it starts one process per injection point). A small script (model + backward + AdamW + generate +
# save/load + tokenizer) runs under HB_FAIL_ALLOC=N (kernels/alloc.h: the N-th allocation of core/ and
# kernels/ fails) for N = 0, STEP, 2·STEP, ... until a run no longer fails. Every run must either finish
# or stop with a Lua error that mentions memory; a signal (crash, sanitizer abort) or another message is
# reported. Give an ASan build as HYBLUA to check the bindings' error paths for leaks too.
# Usage, from the repository root: sh tests/scripts/allocfail_lua.sh ./hyblua 1
hy=${1:-./hyblua}
step=${2:-1}
tmp=$(mktemp -d /tmp/hb_allocfail_lua_XXXXXX)
cat > "$tmp/s.lua" <<'EOF'
local hb = require "hyblua"
local dir = arg[1]
hb.manual_seed(3)
local m = hb.models.new({ model_type = "gated_deltanet", hidden_size = 16, num_hidden_layers = 2, num_heads = 2,
  head_dim = 8, vocab_size = 32, attn = hb.schedule.ratio(1, { num_heads = 2 }) }, { seed = 3 })
local opt = hb.optim.AdamW(m:parameters(), { lr = 1e-3 })
local ids = hb.randint(0, 32, { 2, 9 })
local loss = m:loss(ids)
loss:backward()
hb.optim.clip_grad_norm(m:parameters(), 1.0)
opt:step()
local logits = hb.no_grad(function() return m:forward(ids) end)
local out = m:generate(hb.tensor({ { 1, 2, 3 } }, "int64"), 3)
m:save_pretrained(dir .. "/ck")
local m2 = hb.load_pretrained(dir .. "/ck")
local tok = hb.tokenizer.byte()
local e = tok:encode("hello")
print("done")
EOF
n=0; runs=0; failed=0; crashes=0; other=0; finished_in_a_row=0
while [ $finished_in_a_row -lt 3 ]; do
  rm -rf "$tmp/ck"
  HB_FAIL_ALLOC=$n "$hy" "$tmp/s.lua" "$tmp" > "$tmp/out" 2> "$tmp/err"
  rc=$?
  runs=$((runs + 1))
  if [ $rc -eq 0 ] && grep -q '^done' "$tmp/out"; then
    finished_in_a_row=$((finished_in_a_row + 1))
  else
    finished_in_a_row=0
    if [ $rc -ge 128 ] || grep -q 'Sanitizer' "$tmp/err"; then
      crashes=$((crashes + 1)); echo "N=$n: CRASH (status $rc)"; head -5 "$tmp/err"
    elif grep -qi 'memory' "$tmp/err"; then
      failed=$((failed + 1))
    else
      other=$((other + 1)); echo "N=$n: status $rc, message without 'memory': $(head -1 "$tmp/err")"
    fi
  fi
  n=$((n + step))
done
echo "$runs runs (N = 0..$((n - step)) step $step): $failed stopped with an out-of-memory error, $other with another message, $crashes crashed"
rm -rf "$tmp"
[ $crashes -eq 0 ]

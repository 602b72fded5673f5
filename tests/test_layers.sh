#!/bin/sh
# tests/test_layers.sh — the layers point down and nothing goes round in circles (TAP).
#
# 1. tests/scripts/include_graph.sh --check on this repository: no upward #include (lua → io → core →
#    kernels), no cycle among the directories, among one directory's files or among the Lua modules;
# 2. the generated "Include graph" section of docs/architecture.md is what the script prints now;
# 3. the checker itself, on small trees made here: a clean tree passes, and each kind of fault (an
#    upward include spelled with ../ or found through -I, <lua.h> below lua/, an include that resolves
#    nowhere, a cycle of two and of three files, a cycle between directories, a cycle of Lua modules)
#    fails with exactly the expected lines; --update-doc and --check-doc work on a tree's docs.
cd "$(dirname "$0")/.." || exit 1
G=tests/scripts/include_graph.sh
n=0
fails=0
ok() { # ok COND-STATUS DESCRIPTION
    n=$((n + 1))
    if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fails=$((fails + 1)); fi
}
diag() { sed 's/^/# /'; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hb_layers.XXXXXX") || { echo "Bail out! cannot create a temporary folder"; exit 1; }
trap 'rm -rf "$tmp"' EXIT

# ---- this repository ----
out=$(sh $G --check 2>&1); rc=$?
ok $rc "include_graph.sh --check: no upward include, no cycle"
[ -n "$out" ] && printf '%s\n' "$out" | diag
out=$(sh $G --check-doc 2>&1); rc=$?
ok $rc "docs/architecture.md's include graph is current"
[ -n "$out" ] && printf '%s\n' "$out" | diag

# ---- the checker on small trees ----
# put FILE LINE...: write the lines to $t/FILE
put() { mkdir -p "$t/$(dirname "$1")"; f=$1; shift; printf '%s\n' "$@" > "$t/$f"; }
clean_tree() { # a tree that keeps the rules, in $t
    t=$1; rm -rf "$t"; mkdir -p "$t"
    put kernels/k.h '#include <stddef.h>'
    put kernels/k.c '#include "k.h"' '#include "kmath.h"'
    put kernels/kmath.h ''
    put core/t.h '#include "../kernels/k.h"'
    put core/t.c '#include "t.h"' '#include "k.h"'
    put core/u.c '#include "t.h"'
    put io/f.h '#include "../core/t.h"'
    put io/f.c '#include "f.h"'
    put lua/b.c '#include "../io/f.h"' '#include "../core/t.h"' '#include <lua.h>'
    put lua/hyblua/init.lua 'local m = require "hyblua.models"'
    put lua/hyblua/models.lua 'local c = require("hyblua.config") -- require "hyblua.init" is a comment'
    put lua/hyblua/config.lua 'return {}'
}
# expect NAME STATUS EXPECTED-OUTPUT: run --check on $t, compare status and the whole output
expect() {
    got=$(sh $G --check "$t" 2>&1); rc=$?
    if [ "$rc" -eq "$2" ] && [ "$got" = "$3" ]; then ok 0 "$1"; else
        ok 1 "$1"; printf 'exit %s, expected %s; output:\n%s\nexpected:\n%s\n' "$rc" "$2" "$got" "$3" | diag
    fi
}

clean_tree "$tmp/clean"
expect "checker: a clean tree passes, silently" 0 ""

clean_tree "$tmp/up"
put kernels/k.c '#include "k.h"' '#include "../core/t.h"'
expect "checker: kernels/ including ../core/t.h is an upward arrow" 1 \
    'include_graph: upward arrow: kernels/k.c:2 includes "../core/t.h" = core/t.h (kernels → core)
include_graph: cycle among directories: core → kernels → core'

clean_tree "$tmp/upi"
put kernels/k.h '#include "t.h"'
expect "checker: an upward include found through -Icore is caught too" 1 \
    'include_graph: upward arrow: kernels/k.h:1 includes "t.h" = core/t.h (kernels → core)
include_graph: cycle among directories: core → kernels → core'

clean_tree "$tmp/lua"
put core/u.c '#include "t.h"' '#include <lauxlib.h>'
expect "checker: <lauxlib.h> in core/ is an arrow up to lua" 1 \
    'include_graph: upward arrow: core/u.c:2 includes <lauxlib.h> (core → lua): only lua/ sees the Lua API'

clean_tree "$tmp/unres"
put io/f.c '#include "f.h"' '#include "nowhere.h"'
expect "checker: a quoted include that resolves nowhere is an error" 1 \
    'include_graph: unresolved: io/f.c:2 includes "nowhere.h", found neither beside it nor in kernels/, core/ (a system header is written <...>)'

clean_tree "$tmp/cyc2"
put core/u.h '#include "t.h"'
put core/t.c '#include "t.h"' '#include "k.h"' '#include "u.h"'
expect "checker: t ↔ u (core/t.c includes u.h, u.h and u.c include t.h) is a cycle of two" 1 \
    'include_graph: cycle among core/ files: t → u → t: core/t.c includes "u.h"; core/u.c includes "t.h"'

clean_tree "$tmp/cyc3"
put io/g.h '#include "h.h"'
put io/h.h '#include "../core/t.h"'
put io/h.c '#include "h.h"' '#include "f.h"'
put io/f.c '#include "f.h"' '#include "g.h"'
expect "checker: f → g → h → f among io/ files is a cycle of three" 1 \
    'include_graph: cycle among io/ files: f → g → h → f: io/f.c includes "g.h"; io/g.h includes "h.h"; io/h.c includes "f.h"'

clean_tree "$tmp/dirs"
put core/u.c '#include "t.h"' '#include "../io/f.h"'
expect "checker: core/ including io/ is an upward arrow and a cycle of directories" 1 \
    'include_graph: upward arrow: core/u.c:2 includes "../io/f.h" = io/f.h (core → io)
include_graph: cycle among directories: core → io → core'

clean_tree "$tmp/luacyc"
put lua/hyblua/config.lua 'local i = require "hyblua"'
expect "checker: hyblua → models → config → hyblua is a cycle of Lua modules" 1 \
    'include_graph: cycle among Lua modules: hyblua → hyblua.models → hyblua.config → hyblua'

clean_tree "$tmp/doc"
begin='<!-- include-graph: generated by tests/scripts/include_graph.sh, do not edit; regenerate with tests/scripts/include_graph.sh --update-doc -->'
put docs/architecture.md '# A' '' "$begin" 'stale' '<!-- include-graph end -->' 'tail'
sh $G --check-doc "$t" >/dev/null 2>&1; stale=$?
sh $G --update-doc "$t" >/dev/null 2>&1; upd=$?
sh $G --check-doc "$t" >/dev/null 2>&1; fresh=$?
want=$(printf '# A\n\n%s\n' "$begin"; sh $G "$t"; printf '<!-- include-graph end -->\ntail\n')
[ "$stale" -eq 1 ] && [ "$upd" -eq 0 ] && [ "$fresh" -eq 0 ] && [ "$(cat "$t/docs/architecture.md")" = "$want" ]
ok $? "checker: --check-doc fails on a stale section, --update-doc rewrites only that section"

echo "1..$n"
[ "$fails" -eq 0 ]

#!/bin/sh
# tests/test_make_targets.sh — every target the Makefile declares (.PHONY, and the header's "Targets:" list)
# has a rule, and the documented entry points print a plan under `make -n` (TAP). `make data` once lost its
# rule while staying in .PHONY: make then did nothing and said nothing.
cd "$(dirname "$0")/.." || exit 1
n=0
fails=0
ok() {
    n=$((n + 1))
    if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fails=$((fails + 1)); fi
}
# every .PHONY target and every target the header lists: a forced dry run (make -n -B) prints a command
phony=$(sed -n 's/^\.PHONY:[[:space:]]*//p' Makefile | tr ' ' '\n' | grep -v '^$')
header=$(sed -n '1s/.*Targets: *//p' Makefile | sed 's/([^)]*)//g; s/\.$//' | tr ',' '\n' | sed 's/[[:space:]]//g' | grep -v '^$')
for t in $(printf '%s\n%s\n' "$phony" "$header" | sort -u); do
    out=$(make -n -B "$t" 2>/dev/null | grep -v '^make' | head -1)
    [ -n "$out" ]
    ok $? "make $t has a rule (make -n -B $t prints what it would run)"
done
make -n data 2>/dev/null | grep -q 'recipes/data/fetch_sotu.sh'
ok $? "make data runs recipes/data/fetch_sotu.sh"
echo "1..$n"
[ "$fails" -eq 0 ]

#!/usr/bin/env bash
# include_graph.sh — the #include graph of the C sources, checked: layers point down only
# (lua → io → core → kernels) and core's files form no circle. Prints, for each directory, every module
# (x.c + x.h) in dependency order (a module only includes those printed above it) with what it includes;
# docs/architecture.md shows this output. Exit 1, naming the culprit, on an upward include or a circle.
#   usage: tests/scripts/include_graph.sh   (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/../.."

rank() { case "$1" in kernels) echo 0 ;; core) echo 1 ;; io) echo 2 ;; lua) echo 3 ;; *) echo 9 ;; esac; }
fail=0
edges=$(mktemp)
trap 'rm -f "$edges"' EXIT

for f in kernels/*.[ch] core/*.[ch] io/*.[ch] lua/*.[ch]; do
  dir=${f%%/*}
  base=$(basename "$f"); mod="$dir/${base%.*}"
  while read -r inc; do
    case "$inc" in
      ../*/*) tdir=${inc#../}; tdir=${tdir%%/*}; tbase=$(basename "$inc") ;;
      */*) continue ;;
      *) tbase=$inc
         if [ -e "$dir/$inc" ]; then tdir=$dir
         elif [ -e "kernels/$inc" ]; then tdir=kernels   # the Makefile's -Ikernels -Icore order
         elif [ -e "core/$inc" ]; then tdir=core
         else continue; fi ;;
    esac
    target="$tdir/${tbase%.*}"
    [ "$target" = "$mod" ] && continue
    if [ "$(rank "$tdir")" -gt "$(rank "$dir")" ]; then
      echo "include_graph: $f includes $tdir/$tbase — an upward arrow ($dir may not include $tdir)" >&2
      fail=1
    fi
    echo "$mod $target" >>"$edges"
  done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
done

for dir in kernels core io lua; do
  mods=$(for f in "$dir"/*.[ch]; do b=$(basename "$f"); echo "$dir/${b%.*}"; done | sort -u)
  # tsort wants "dependency dependent" pairs; self-pairs list modules without edges
  pairs=$( { for m in $mods; do echo "$m $m"; done
             awk -v d="$dir/" 'index($1, d) == 1 && index($2, d) == 1 { print $2, $1 }' "$edges"; } )
  if ! order=$(tsort <<<"$pairs" 2>/dev/null); then
    echo "include_graph: the files of $dir/ include each other in a circle:" >&2
    tsort <<<"$pairs" 2>&1 >/dev/null | sed 's/^/  /' >&2 || true
    fail=1
    continue
  fi
  echo "$dir/"
  for m in $order; do
    deps=$(awk -v m="$m" '$1 == m { print $2 }' "$edges" | sort -u | sed "s|^$dir/||" | tr '\n' ' ')
    printf '  %-22s %s\n' "${m#"$dir"/}" "${deps:+→ $deps}"
  done
done
exit $fail

#!/bin/sh
# tests/test_layers.sh — TAP: the #include graph points down only (lua → io → core → kernels) and core's
# files form no circle (tests/scripts/include_graph.sh; the graph itself is in docs/architecture.md).
if err=$(tests/scripts/include_graph.sh 2>&1 >/dev/null); then
  echo "ok 1 - layers include only downwards, no circle among a directory's files"
else
  echo "not ok 1 - layers include only downwards, no circle among a directory's files"
  echo "$err" | sed 's/^/# /'
fi
echo "1..1"

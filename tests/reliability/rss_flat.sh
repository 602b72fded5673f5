#!/usr/bin/env bash
# tests/reliability/rss_flat.sh [STEPS] — is a long training run's memory flat after warm-up?
# Runs recipes/gdn_3to1.lua for STEPS steps (default 500; checkpoints and validation every $EVERY steps, default 100)
# and samples the process's VmRSS every 0.2 s next to the step it has reached. Prints one line per
# 50 steps and the RSS growth from step 50 to the end. An experiment for docs/reliability.md, not a test.
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-500}
out=$(mktemp -d /tmp/hb_rss.XXXXXX)
./hyblua recipes/gdn_3to1.lua --out "$out/run" --set train.steps="$steps" --set train.batch_size=8 \
  --set train.save_every=${EVERY:-100} --set train.eval_every=${EVERY:-100} > "$out/stdout.txt" 2>&1 &
pid=$!
: > "$out/rss.tsv"
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/^VmRSS/ {print $2}' /proc/$pid/status 2>/dev/null || true)
  step=$(tail -n 1 "$out/run/metrics.jsonl" 2>/dev/null | grep -o '"step":[0-9]*' | cut -d: -f2 || true)
  [ -n "$rss" ] && echo -e "${step:-0}\t$rss" >> "$out/rss.tsv"
  sleep 0.2
done
wait "$pid" || { echo "training failed:"; tail -20 "$out/stdout.txt"; exit 1; }
awk -v steps="$steps" '
  { s = $1; r = $2; if (r > peak[int(s / 50)]) peak[int(s / 50)] = r; if (r > maxr) maxr = r }
  END {
    printf "%12s %12s\n", "steps", "peak RSS MiB"
    for (b = 0; b <= int(steps / 50); b++) if (b in peak) printf "%5d-%-6d %12.1f\n", b * 50, (b + 1) * 50 - 1, peak[b] / 1024
    for (b = 0; b <= int(steps / 50); b++) if (b in peak) { if (b * 50 < steps / 2) first = peak[b] > first ? peak[b] : first; else second = peak[b] > second ? peak[b] : second }
    printf "peak RSS, first half of the run: %.1f MiB; second half: %.1f MiB; growth: %.1f MiB\n", first / 1024, second / 1024, (second - first) / 1024
  }' "$out/rss.tsv"
echo "log: $out"

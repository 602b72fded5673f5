#!/bin/sh
# tests/scripts/diskfull_tmpfs.sh — the disk-full experiment on a real filesystem (TAP; not run by make test:
# it needs root to mount a tmpfs). A 1100 KiB tmpfs holds one checkpoint of tests/scripts/train_small.lua
# (~810 KB) but not a second one, so the checkpoint of step 4 fails with a real ENOSPC from write(2).
# Then the filesystem is grown (remount) and the same command resumes from step 2 and finishes.
# Usage, from the repository root: sh tests/scripts/diskfull_tmpfs.sh
mnt=$(mktemp -d /tmp/hb_tmpfs_XXXXXX)
if ! mount -t tmpfs -o size=1100k tmpfs "$mnt" 2>/dev/null; then
  rmdir "$mnt"
  echo "1..0 # SKIP cannot mount a tmpfs (needs root / CAP_SYS_ADMIN)"
  exit 0
fi
n=0; failed=0
check() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=1; fi; }
log=$(mktemp)
./hyblua tests/scripts/train_small.lua "$mnt/run" 6 > /dev/null 2> "$log"
check $(( $? == 0 )) "the run fails when the disk fills up (exit status)"
grep -q "training stopped: checkpoint of step 4 ($mnt/run/ckpt-00000004) could not be written" "$log"
check $? "the message names the checkpoint"
grep -q "No space left on device" "$log"
check $? "the message says No space left on device"
grep -q "the last good checkpoint is $mnt/run/ckpt-00000002" "$log"
check $? "the message names the last good checkpoint"
grep "training stopped" "$log" | sed 's/^/# /'
[ "$(ls -A "$mnt/run" | tr '\n' ' ')" = "ckpt-00000002 metrics.jsonl " ]
check $? "nothing half-written is left behind ($(ls -A "$mnt/run" | tr '\n' ' '))"
df -k "$mnt" | sed 's/^/# /'
mount -o remount,size=4m "$mnt"
./hyblua tests/scripts/train_small.lua "$mnt/run" 6 > /dev/null 2> "$log"
check $? "after freeing space the same command finishes"
grep -q "resuming from $mnt/run/ckpt-00000002" "$log"
check $? "it resumed from the last good checkpoint"
umount "$mnt"; rmdir "$mnt"; rm -f "$log"
echo "1..$n"
exit $failed

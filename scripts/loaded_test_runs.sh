#!/usr/bin/env bash
# The README's test command 5 times in a row while two other CPU-bound
# processes run (issue #13's check that the suite holds on a loaded machine).
# Results: one line per run in ${LOG:-/tmp/loadruns.log}.
set -u
cd "$(dirname "$0")/.."
LOG=${LOG:-/tmp/loadruns.log}
yes > /dev/null & Y1=$!
yes > /dev/null & Y2=$!
trap 'kill $Y1 $Y2 2>/dev/null' EXIT
for i in 1 2 3 4 5; do
  s=$(date +%s)
  python -m pytest -q -p no:cacheprovider > "/tmp/loadrun$i.txt" 2>&1
  rc=$?
  echo "run $i rc=$rc seconds=$(( $(date +%s) - s )) $(tail -1 "/tmp/loadrun$i.txt")" >> "$LOG"
done

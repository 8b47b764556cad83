#!/usr/bin/env bash
# Run several fuzz targets one after another (one process; start two of these
# for two cores) and append "target runs findings seconds" to fuzz/logs/summary.tsv.
#
#   fuzz/campaign.sh TARGET:RUNS [TARGET:RUNS ...]
#   fuzz/campaign.sh example:300000 tensor:200000 &
#
# Each target's full libFuzzer log is fuzz/logs/<target>.log; a crash input
# is fuzz/work/<target>/crash-* (reproduce: python3 fuzz/run.py TARGET --reproduce FILE).
set -u
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$here/logs"
for spec in "$@"; do
  target="${spec%%:*}"
  runs="${spec##*:}"
  start=$(date +%s)
  python3 "$here/run.py" "$target" --runs "$runs" > "$here/logs/$target.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  done_runs=$(grep -oE 'number_of_executed_units: *[0-9]+' "$here/logs/$target.log" | grep -oE '[0-9]+$' | tail -1)
  findings=$(grep -c 'Uncaught Python exception' "$here/logs/$target.log")
  printf '%s\t%s\t%s\t%s\trc=%s\n' "$target" "${done_runs:-0}" "$findings" "$secs" "$rc" >> "$here/logs/summary.tsv"
done

#!/usr/bin/env bash
# `detect` at 1M with one core taken by another process (issue 14: "both
# cores, robustly"): does the second worker still pay, and does it hurt
# when it has to share?
#
#   bench/busy.sh                    # default names, 3 runs a setting
#   NAMES=skewed RUNS=5 bench/busy.sh
#
# For each of: the machine as it is, then one core kept busy by `yes`
# (a process that never sleeps, at normal priority), it runs `detect`
# with RAYON_NUM_THREADS 1, 2 (the default: one per core) and 4, the
# settings alternating run by run, and prints the median wall time, the
# CPU time it used (user + sys), the engine's share (rules) and the peak
# resident memory. Uses bench/detect.sh's program (run that first) and the
# release binary. Read the load column: the machine may be shared.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
NAMES=${NAMES:-default}
SIZE=${SIZE:-1000000}
BIN=${BIN:-target/release/channel-sync}
NOW=2026-11-26T00:00:00Z
dir=bench/data/$SIZE
[ "$NAMES" = default ] || dir=bench/data/$NAMES-$SIZE
[ -f "$dir/registrations.csv" ] || { echo "no program in $dir: run NAMES=$NAMES bench/detect.sh $SIZE first" >&2; exit 1; }
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }

hog=""
trap '[ -n "$hog" ] && kill "$hog" 2>/dev/null; true' EXIT

raw=$(mktemp)
run_all() {
  local label=$1
  for _ in $(seq "$RUNS"); do
    for t in 1 2 4; do
      log=$(mktemp)
      RAYON_NUM_THREADS=$t RUST_LOG=channel_sync=debug /usr/bin/time -f 'TIME %e %U %S %M' \
        "$BIN" detect --input "$dir" --now "$NOW" --format json >/dev/null 2>"$log" || true
      rules=$(sed -e 's/\x1b\[[0-9;]*m//g' "$log" | grep -o '\brules_ms=[0-9]*' | tail -1 | cut -d= -f2)
      awk -v l="$label" -v t="$t" -v r="${rules:-0}" '/^TIME/ {printf "%s %s %s %.2f %.2f %.0f\n", l, t, $2, $3 + $4, r / 1000, $5 / 1024}' "$log" >>"$raw"
      rm -f "$log"
    done
  done
}

load_quiet=$(cut -d' ' -f1 /proc/loadavg)
run_all as-is
yes >/dev/null &
hog=$!
sleep 1
load_busy=$(cut -d' ' -f1 /proc/loadavg)
run_all one-core-busy
kill "$hog"
hog=""

med() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
echo "| machine ($NAMES, $SIZE) | threads | wall (s) | CPU (s) | rules (s) | peak RSS (MiB) | load at start |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for label in as-is one-core-busy; do
  load=$load_quiet
  [ "$label" = as-is ] || load=$load_busy
  for t in 1 2 4; do
    col() { awk -v l="$label" -v t="$t" -v c="$1" '$1 == l && $2 == t {print $c}' "$raw" | med; }
    echo "| $label | $t | $(col 3) | $(col 4) | $(col 5) | $(col 6) | $load |"
  done
done
rm -f "$raw"

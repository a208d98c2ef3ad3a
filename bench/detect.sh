#!/usr/bin/env bash
# Benchmark `channel-sync detect` on generated programs of growing size.
#
#   bench/detect.sh                        # 100k, 250k, 500k and 1M opportunities
#   bench/detect.sh 1000000                # just one size
#   NAMES=skewed bench/detect.sh 100000 1000000   # the skewed name profile (or NAMES=real)
#   RUNS=5 bench/detect.sh 1000000         # more runs per size (the median is reported)
#
# Data is generated once per size and profile under bench/data/ (git-ignored)
# with a fixed seed and clock (`generate --names $NAMES`), so every run measures
# the same program. Prints a Markdown table: wall time (end to end, process
# start to exit), the split reported by the binary (read = parse + validate the
# files, rules = the engine, output = JSON to /dev/null), the matching phases
# from the debug log (index = normalise and index the accounts, exact = steps
# 1-3, fuzzy = step 4), peak resident memory, and the 1-minute load average
# when the size started (the machine is shared: read the numbers with it).
# Every figure is that of the run with the median wall time.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(100000 250000 500000 1000000)
RUNS=${RUNS:-3}
NAMES=${NAMES:-default}
NOW=2026-11-26T00:00:00Z
BIN=target/release/channel-sync
SYNTH=target/release/channel-sync-synth

cargo build --release --quiet -p channel-sync -p channel-sync-synth
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }

ms() { grep -o "\b$1=[0-9]*" "$2" | tail -1 | cut -d= -f2; }
s() { awk "BEGIN {printf \"%.2f\", ${1:-0}/1000}"; }
# The engine's own phases are logged in microseconds.
s_us() { awk "BEGIN {printf \"%.2f\", ${1:-0}/1000000}"; }

echo "| profile | opportunities | accounts | registrations | findings | wall (s) | read (s) | rules (s) | index (s) | exact (s) | fuzzy (s) | output (s) | peak RSS (MiB) | load |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in "${SIZES[@]}"; do
  dir=bench/data/$n
  [ "$NAMES" = default ] || dir=bench/data/$NAMES-$n
  if [ ! -f "$dir/registrations.csv" ]; then
    "$SYNTH" generate --out "$dir" --opportunities "$n" --seed 42 --now "$NOW" --names "$NAMES" 2>/dev/null
  fi
  load=$(cut -d' ' -f1 /proc/loadavg)
  rows=()
  for _ in $(seq "$RUNS"); do
    log=$(mktemp)
    RUST_LOG=channel_sync=debug /usr/bin/time -f 'TIME %e %M' \
      "$BIN" detect --input "$dir" --now "$NOW" --format json >/dev/null 2>"$log" || true
    wall=$(awk '/^TIME/ {print $2}' "$log")
    rss=$(awk '/^TIME/ {printf "%.0f", $3/1024}' "$log")
    rows+=("$wall|$NAMES | $n | $(($(wc -l <"$dir/accounts.csv") - 1)) | $(($(wc -l <"$dir/registrations.csv") - 1)) | $(ms findings "$log") | $wall | $(s "$(ms read_ms "$log")") | $(s "$(ms rules_ms "$log")") | $(s_us "$(ms index_us "$log")") | $(s_us "$(ms exact_us "$log")") | $(s_us "$(ms fuzzy_us "$log")") | $(s "$(ms output_ms "$log")") | $rss | $load |")
    rm -f "$log"
  done
  median=$(printf '%s\n' "${rows[@]}" | sort -t'|' -k1,1 -g | sed -n "$(((RUNS + 1) / 2))p")
  echo "| ${median#*|}"
done

#!/usr/bin/env bash
# Benchmark `channel-sync detect` on generated programs of growing size.
#
#   bench/detect.sh                 # 100k, 250k, 500k and 1M opportunities
#   bench/detect.sh 1000000         # just one size
#   RUNS=5 bench/detect.sh 1000000  # more runs per size (the best is reported)
#
# Data is generated once per size under bench/data/ (git-ignored) with a
# fixed seed and clock, so every run measures the same program. Prints a
# Markdown table: wall time (end to end, process start to exit), the split
# reported by the binary (read = parse + validate the files, rules = the
# engine, output = JSON to /dev/null), and peak resident memory.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(100000 250000 500000 1000000)
RUNS=${RUNS:-3}
NOW=2026-11-26T00:00:00Z
BIN=target/release/channel-sync

cargo build --release --quiet
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }

echo "| opportunities | accounts | registrations | findings | wall (s) | read (s) | rules (s) | output (s) | peak RSS (MiB) |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in "${SIZES[@]}"; do
  dir=bench/data/$n
  if [ ! -f "$dir/registrations.csv" ]; then
    "$BIN" generate --out "$dir" --opportunities "$n" --seed 42 --now "$NOW" 2>/dev/null
  fi
  best=""
  for _ in $(seq "$RUNS"); do
    log=$(mktemp)
    RUST_LOG=channel_sync=info /usr/bin/time -f 'TIME %e %M' \
      "$BIN" detect --input "$dir" --now "$NOW" --format json >/dev/null 2>"$log" || true
    wall=$(awk '/^TIME/ {print $2}' "$log")
    rss=$(awk '/^TIME/ {printf "%.0f", $3/1024}' "$log")
    read_ms=$(grep -o 'read_ms=[0-9]*' "$log" | cut -d= -f2)
    rules_ms=$(grep -o 'rules_ms=[0-9]*' "$log" | cut -d= -f2)
    output_ms=$(grep -o 'output_ms=[0-9]*' "$log" | cut -d= -f2)
    findings=$(grep -o 'findings=[0-9]*' "$log" | cut -d= -f2)
    rm -f "$log"
    if [ -z "$best" ] || awk "BEGIN {exit !($wall < $best)}"; then
      best=$wall
      row="| $n | $(($(wc -l <"$dir/accounts.csv") - 1)) | $(($(wc -l <"$dir/registrations.csv") - 1)) | $findings | $wall | $(awk "BEGIN {printf \"%.2f\", $read_ms/1000}") | $(awk "BEGIN {printf \"%.2f\", $rules_ms/1000}") | $(awk "BEGIN {printf \"%.2f\", $output_ms/1000}") | $rss |"
    fi
  done
  echo "$row"
done

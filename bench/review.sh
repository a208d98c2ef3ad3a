#!/usr/bin/env bash
# Benchmark `channel-sync review` on a generated program.
#
#   bench/review.sh                 # 1M opportunities
#   RUNS=5 bench/review.sh 1000000  # more runs (the best is reported)
#
# The program is `generate --review-inputs`'s (seed 42, fixed clock) in
# bench/data/review-N/: the six files plus campaign_id on opportunities,
# program_costs and mdf, with most partners dormant and about one in ten
# producing (see crates/synth/src/review.rs). Prints wall time, the
# read/review split the binary logs, user and system CPU time
# and peak resident memory, for --format json and --format html.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-1000000}
RUNS=${RUNS:-3}
NOW=2026-11-26T00:00:00Z
BIN=target/release/channel-sync
SYNTH=target/release/channel-sync-synth

[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet -p channel-sync -p channel-sync-synth
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }

dir=bench/data/review-$N
if [ ! -f "$dir/mdf.csv" ]; then
  "$SYNTH" generate --out "$dir" --opportunities "$N" --seed 42 --now "$NOW" --review-inputs 2>/dev/null
fi

uptime
echo "| format | opportunities | partners | wall (s) | user (s) | sys (s) | read (s) | review (s) | peak RSS (MiB) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for format in json html; do
  best=""
  for _ in $(seq "$RUNS"); do
    log=$(mktemp)
    RUST_LOG=channel_sync=info /usr/bin/time -f 'TIME %e %M %U %S' \
      "$BIN" review --input "$dir" --now "$NOW" --format "$format" >/dev/null 2>"$log" || true
    wall=$(awk '/^TIME/ {print $2}' "$log")
    rss=$(awk '/^TIME/ {printf "%.0f", $3/1024}' "$log")
    usr=$(awk '/^TIME/ {print $4}' "$log")
    sys=$(awk '/^TIME/ {print $5}' "$log")
    read_ms=$(grep -o 'read_ms=[0-9]*' "$log" | cut -d= -f2)
    review_ms=$(grep -o 'review_ms=[0-9]*' "$log" | cut -d= -f2)
    partners=$(grep -o 'partners=[0-9]*' "$log" | cut -d= -f2)
    rm -f "$log"
    if [ -z "$best" ] || awk "BEGIN {exit !($wall < $best)}"; then
      best=$wall
      row="| $format | $N | $partners | $wall | $usr | $sys | $(awk "BEGIN {printf \"%.2f\", $read_ms/1000}") | $(awk "BEGIN {printf \"%.2f\", $review_ms/1000}") | $rss |"
    fi
  done
  echo "$row"
done

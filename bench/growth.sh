#!/usr/bin/env bash
# How each phase of `detect` grows from 100k to 1M opportunities (issue 14:
# within 1.3x of linear, that is at most 13x, for every phase).
#
#   bench/growth.sh                       # default profile, 9 runs a size
#   NAMES=skewed bench/growth.sh          # the skewed name profile (or NAMES=real)
#   ROUNDS=5 bench/growth.sh              # five such tables, then each phase's
#                                         # ratio over them: median, range and
#                                         # how many rounds went over 13x
#
# Uses the programs bench/detect.sh generates (run it once first for both
# sizes) and the release binary. Prints, for each phase the debug log
# times, the median at 100k and at 1M and their ratio. The reads, the rules
# as a whole and the output are logged in milliseconds; the phases inside
# (link, index, matching, context, findings, scorecards) in microseconds, so
# that the ratio of a phase of a few ms is not rounded away.
set -euo pipefail
cd "$(dirname "$0")/.."

# Nine runs a size: a phase of a few milliseconds moves from one run to the
# next (the scorecards at 1M: 22-46 ms over eleven runs), and a median of
# nine moves less than one of five.
RUNS=${RUNS:-9}
ROUNDS=${ROUNDS:-1}
NAMES=${NAMES:-default}
BIN=${BIN:-target/release/channel-sync}
NOW=2026-11-26T00:00:00Z
prefix=""
[ "$NAMES" = default ] || prefix="$NAMES-"
small=bench/data/${prefix}100000
large=bench/data/${prefix}1000000
for d in "$small" "$large"; do
  [ -f "$d/registrations.csv" ] || { echo "no program in $d: run NAMES=$NAMES bench/detect.sh 100000 1000000 first" >&2; exit 1; }
done

raw=$(mktemp)
ratios=$(mktemp)
trap 'rm -f "$raw" "$ratios"' EXIT
# The sizes alternate, run by run, so that a change in the machine's speed
# (it is shared) weighs on both sides of the ratio alike. It does not cancel
# every change: a slow spell of the machine slows the memory-bound 1M runs
# more than the cache-sized 100k ones (BENCHMARKS.md, "how far the ratios
# move on their own"), so one round's ratio can go over 13x and the next not.
median() { awk -v d="$1" -v k="$2" '$1 == d && $2 == k {print $3}' "$raw" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
for round in $(seq "$ROUNDS"); do
  [ "$ROUNDS" -gt 1 ] && echo "round $round of $ROUNDS ($(date -u +%H:%M:%S) UTC)"
  for _ in $(seq "$RUNS"); do
    for d in "$small" "$large"; do
      RUST_LOG=channel_sync=debug "$BIN" detect --input "$d" --now "$NOW" --format json 2>&1 >/dev/null |
        sed -e 's/\x1b\[[0-9;]*m//g' |
        awk -v d="$d" '
          /Other tables read/ { match($0, /ms=[0-9]+/); print d, "other_tables_ms", substr($0, RSTART + 3, RLENGTH - 3) }
          /Opportunities read/ { match($0, /ms=[0-9]+/); print d, "opportunities_ms", substr($0, RSTART + 3, RLENGTH - 3) }
          { n = split($0, f, " "); for (i = 1; i <= n; i++) if (f[i] ~ /^[a-z_]+_(ms|us)=[0-9]+$/) { split(f[i], kv, "="); print d, kv[1], kv[2] } }'
    done
  done >"$raw"

  echo "| phase ($NAMES) | 100k (ms) | 1M (ms) | 1M / 100k |"
  echo "|---|---:|---:|---:|"
  for k in other_tables_ms opportunities_ms read_ms link_us index_us exact_us fuzzy_us context_us findings_us scorecards_us rules_ms output_ms; do
    a=$(median "$small" "$k")
    b=$(median "$large" "$k")
    [ -n "$a" ] && [ -n "$b" ] || continue
    awk -v k="$k" -v a="$a" -v b="$b" 'BEGIN {
      label = k; sub(/_(ms|us)$/, "", label)
      # Microseconds are shown as milliseconds with two decimals.
      if (k ~ /_us$/) { fa = sprintf("%.2f", a / 1000); fb = sprintf("%.2f", b / 1000) } else { fa = a; fb = b }
      printf "| %s | %s | %s | %s |\n", label, fa, fb, (a > 0 ? sprintf("%.1f", b / a) : "-")
    }'
    awk -v k="$k" -v a="$a" -v b="$b" 'BEGIN { if (a > 0) printf "%s %.1f\n", k, b / a }' >>"$ratios"
  done
done

[ "$ROUNDS" -gt 1 ] || exit 0
echo
echo "| phase ($NAMES, $ROUNDS rounds) | median 1M / 100k | lowest | highest | rounds over 13x |"
echo "|---|---:|---:|---:|---:|"
for k in other_tables_ms opportunities_ms read_ms link_us index_us exact_us fuzzy_us context_us findings_us scorecards_us rules_ms output_ms; do
  awk -v k="$k" '$1 == k {print $2}' "$ratios" | sort -n |
    awk -v k="$k" '{v[NR] = $1; if ($1 > 13) over++}
      END { if (NR == 0) exit
            label = k; sub(/_(ms|us)$/, "", label)
            printf "| %s | %.1f | %.1f | %.1f | %d |\n", label, v[int((NR + 1) / 2)], v[1], v[NR], over }'
done
